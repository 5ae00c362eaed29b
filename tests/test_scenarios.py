"""Scenario files, thresholds and the dyno harness: each seed scenario shortened, on a real redis-server."""

import json
import sys

import pytest
from locust.argument_parser import get_parser

import queuestorm.plugin  # noqa: F401  (registers the options and the scenario hook)

from helpers import ROOT, locust, tails

SCENARIOS = f"{ROOT}/scenarios"


def read(path):
    with open(path) as f:
        return json.load(f)


def parse(monkeypatch, argv, env=None):
    """Locust's own parser, with queuestorm's options and the scenario applied as the locust command would."""
    monkeypatch.setattr(sys, "argv", ["locust", *argv])
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return get_parser().parse_args(argv)


def test_scenario_values_are_defaults_that_env_and_command_line_override(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("users: [DynoWorkerUser]\noptions:\n  protocol: reliable\n  rate: 50\n  run-time: 1m\n"
                    "  headless: true\nthresholds:\n  max_lost: 3\n  latency: {enqueue: {p95: 20}}\n")
    options = parse(monkeypatch, ["--scenario", str(path)])
    assert (options.protocol, options.rate, options.run_time, options.headless) == ("reliable", 50.0, 60, True)
    assert options.user_classes == ["DynoWorkerUser"]
    assert options.max_lost == 3 and options.latency_limit == "enqueue:p95=20"
    options = parse(monkeypatch, ["--scenario", str(path), "--rate", "7"], env={"QS_PROTOCOL": "stream"})
    assert (options.protocol, options.rate) == ("stream", 7.0)
    options = parse(monkeypatch, ["--protocol", "list"], env={"QS_SCENARIO": str(path), "QS_PROTOCOL": "stream"})
    assert options.protocol == "list" and options.rate == 50.0


SHORT_SCENARIO = "options:\n  protocol: reliable\n  rate: 50\n"


@pytest.mark.parametrize("file_name, text", [
    ("locust.conf", "scenario = {path}\n"),
    ("pyproject.toml", "[tool.locust]\nscenario = \"{path}\"\n"),
])
def test_a_scenario_named_in_a_default_locust_config_file_applies(tmp_path, monkeypatch, file_name, text):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SHORT_SCENARIO)
    (tmp_path / file_name).write_text(text.format(path=scenario))
    monkeypatch.chdir(tmp_path)
    options = parse(monkeypatch, [])
    assert (options.scenario, options.protocol, options.rate) == (str(scenario), "reliable", 50.0)


def test_a_config_file_scenario_follows_locusts_precedence(tmp_path, monkeypatch):
    """--config beats locust.conf; the command line and QS_SCENARIO beat both; a value in the config file itself
    beats the scenario's, as every option given outside the scenario does."""
    named, default, other = (tmp_path / f"{name}.yaml" for name in ("named", "default", "other"))
    named.write_text(SHORT_SCENARIO)
    default.write_text("options:\n  protocol: stream\n")
    other.write_text("options:\n  protocol: list\n")
    (tmp_path / "locust.conf").write_text(f"scenario = {default}\n")
    (tmp_path / "run.conf").write_text(f"scenario = {named}\nrate = 9\n")
    monkeypatch.chdir(tmp_path)
    options = parse(monkeypatch, ["--config", "run.conf"])
    assert (options.protocol, options.rate) == ("reliable", 9.0)
    assert parse(monkeypatch, ["--config=run.conf", "--scenario", str(other)]).protocol == "list"
    assert parse(monkeypatch, ["--config", "run.conf"], env={"QS_SCENARIO": str(other)}).protocol == "list"


def test_a_run_takes_its_scenario_from_the_config_file(tmp_path, redis_url, queue):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("options:\n  protocol: reliable\n  users: 2\n  spawn-rate: 2\n  run-time: 2s\n"
                        "  rate: 50\nthresholds:\n  max_lost: 0\n")
    config = tmp_path / "run.conf"
    report = tmp_path / "verdict.json"
    config.write_text(f"scenario = {scenario}\nqueue = {queue}\nreport = {report}\n")
    result = locust("--config", str(config), env={"REDIS_URL": redis_url}, timeout=90)
    assert result.returncode == 0, tails(result)
    verdict = read(report)
    assert verdict["protocol"] == "reliable" and verdict["verdict"] == "pass" and verdict["enqueued"] > 0


@pytest.mark.parametrize("text, message", [
    ("options:\n  users: 2\n  spawn-rat: 3\n", "s.yaml:3: options.spawn-rat: unknown option"),
    ("options:\n  users: many\n", "s.yaml:2: options.users: invalid value 'many'"),
    ("options:\n  drain: sometimes\n", "s.yaml:2: options.drain: 'sometimes' is not one of"),
    ("faults:\n  - {kind: pause, duration: 1}\n  - kind: meteor\n", "s.yaml:3: faults[1].kind: unknown fault"),
    ("thresholds:\n  latency: {enqueue: {p96: 3}}\n", "s.yaml:2: thresholds.latency: 'enqueue:p96=3' is not"),
    ("thresholds:\n  max_lots: 1\n", "s.yaml:2: thresholds.max_lots: unknown threshold"),
    ("option:\n  users: 1\n", "s.yaml:1: option: unknown section"),
    ("options: [1\n", "s.yaml:2: invalid YAML"),
])
def test_scenario_mistakes_name_file_line_and_field_and_exit_2(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = locust("--scenario", str(path), "--run-time", "1s", timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_standalone_dev_runs_on_the_embedded_redis_with_zero_configuration(tmp_path):
    report = tmp_path / "v.json"
    result = locust("--scenario", f"{SCENARIOS}/standalone-dev.yaml", "--run-time", "3s", "--report", str(report))
    assert result.returncode == 0, tails(result)
    doc = read(report)
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["enqueued"] > 100
    assert "figures are those of the embedded server" in result.stdout


def test_dyno_concurrency_prints_the_seed_tables_and_completes_every_task(tmp_path, redis_url):
    report = tmp_path / "v.json"
    result = locust("--scenario", f"{SCENARIOS}/dyno-concurrency.yaml", "--users", "4", "--spawn-rate", "4",
                    "--run-time", "3s", "--tasks-per-second", "200", "--warmup", "1", "--report", str(report),
                    env={"REDIS_URL": redis_url})
    assert result.returncode == 0, tails(result)
    dyno = read(report)["dyno"]
    assert dyno["constants"]["NUM_WORKERS"] == 4 and dyno["constants"]["MAX_FLATS"] == 100
    assert dyno["constants"]["TASKS_PER_SECOND"] == 200
    m = dyno["messaging"]
    assert m["tasks_sent"] == m["tasks_received"] == m["tasks_completed"] > 300
    assert all(w["cycles"] > 0 and w["max_backlog"] < 100 and w["task_mean_ms"] > 0 and w["mem_mb_max"] > 0
               for w in dyno["workers"])
    for title in ("Constants", "Messaging stats", "Worker vitals", "Worker timings", "status: Test succeeded"):
        assert title in result.stdout
    assert "warm-up over" in result.stderr
    for event in ("send", "fetch", "save", "ping", "task"):
        assert f"dyno     {event}" in result.stderr


def test_a_dyno_worker_reaching_its_backlog_limit_fails_and_stops_the_run(tmp_path, redis_url):
    report = tmp_path / "v.json"
    result = locust("--scenario", f"{SCENARIOS}/dyno-concurrency.yaml", "--users", "2", "--spawn-rate", "2",
                    "--run-time", "30s", "--tasks-per-second", "3000", "--backlog-limit", "5", "--report", str(report),
                    env={"REDIS_URL": redis_url})
    assert result.returncode == 1, tails(result)
    doc = read(report)
    reached = doc["dyno"]["reached_backlog_limit"]
    assert reached >= 1 and f"{reached} reached backlog limit" in doc["reasons"]
    assert doc["dyno"]["messaging"]["uptime_seconds"] < 20  # stopped at the limit, not at --run-time
    assert doc["lost"] == 0  # the backlog was worked off at the stop
    assert "status: Test failed" in result.stdout


def test_crossed_thresholds_fail_the_run_naming_threshold_and_value(tmp_path, redis_url, queue):
    report = tmp_path / "v.json"
    faults = tmp_path / "f.yaml"
    faults.write_text("faults:\n  - {kind: client-kill, at: 1, target: load}\n")  # a failed enqueue or two
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "2s", "--queue", queue, "--rate", "50",
                    "--latency-limit", "enqueue:max=0.0001,ping:p50=100000", "--min-rate", "1000000",
                    "--max-error-ratio", "0.0001", "--faults", str(faults), "--report", str(report),
                    env={"REDIS_URL": redis_url})
    assert result.returncode == 1, tails(result)
    reasons = read(report)["reasons"]
    assert any(r.startswith("error ratio ") and "> max_error_ratio 0.0001" in r for r in reasons), reasons
    assert any(r.startswith("latency enqueue:max ") and r.endswith("> 0.0001 ms") for r in reasons), reasons
    assert any(r.startswith("achieved rate ") and "< min_rate 1e+06/s" in r for r in reasons), reasons
    assert not any("ping" in r for r in reasons)
    assert read(report)["lost"] == 0


def test_heroku_crash_classifies_connection_failures_and_counts_connections(tmp_path, redis_url, r):
    before = r.config_get("maxclients")["maxclients"]
    faults = tmp_path / "storm.yaml"
    faults.write_text("faults:\n  - {kind: maxclients, at: 0, duration: 600, maxclients: 14}\n"
                      "  - {kind: client-kill, at: 1.5, target: load}\n")
    report = tmp_path / "v.json"
    result = locust("--scenario", f"{SCENARIOS}/heroku-crash.yaml", "--users", "16", "--spawn-rate", "16",
                    "--run-time", "3s", "--connection-limit", "14", "--faults", str(faults), "--report", str(report),
                    env={"REDIS_URL": redis_url})
    assert result.returncode == 0, tails(result)
    doc = read(report)
    assert doc["lost"] == 0 and doc["enqueued"] > 100
    assert doc["connection_limit"] == 14 and 0 < doc["connections_peak"]
    failures = result.stderr[result.stderr.index("Error report"):]
    assert "connect: max clients: max number of clients reached" in failures, tails(result, 4000)
    assert "enqueue: EOF: " in failures or "enqueue: connection reset: " in failures
    assert r.config_get("maxclients")["maxclients"] == before


def test_a_reused_run_id_starts_clean_deleting_only_that_runs_keys(tmp_path, redis_url, r, run_id):
    args = ("--scenario", f"{SCENARIOS}/dyno-concurrency.yaml", "--users", "2", "--spawn-rate", "2", "--run-time",
            "1s", "--tasks-per-second", "100", "--warmup", "0", "--run-id", run_id)
    r.set("someone-elses-key", "kept")
    r.set(f"queuestorm:{{{run_id}-other}}:meta", "kept")
    first = locust(*args, "--report", str(tmp_path / "1.json"), env={"REDIS_URL": redis_url})
    assert first.returncode == 0, first.stderr[-2000:]
    second = locust(*args, "--report", str(tmp_path / "2.json"), env={"REDIS_URL": redis_url})
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"run id {run_id} existed" in second.stderr
    sent = read(tmp_path / "2.json")["dyno"]["messaging"]["tasks_sent"]
    assert read(tmp_path / "2.json")["enqueued"] == sent  # not the sum of both runs
    assert r.get("someone-elses-key") == b"kept" and r.get(f"queuestorm:{{{run_id}-other}}:meta") == b"kept"
