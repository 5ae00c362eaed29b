"""Every environment variable and every start-form option, each set to a value that is not its default: the option
takes it (units, cheap), and where the behaviour matters a CLI or a run follows it (end to end, bounded)."""

import json
import uuid
from argparse import Namespace

import pytest
import redis

from queuestorm import cli
from queuestorm.locust.options import add_arguments
from queuestorm.model.options import PER_TEST, RunConfig
from queuestorm.run.config import apply_start_form, validate
from queuestorm.protocols import make_protocol

from helpers import enqueue_jobs, locust, queuestorm

# each of queuestorm's Locust options' variables: the text set, and what the option then holds (never its default)
LOCUST_ENV = {
    "REDIS_URL": ("redis://127.0.0.1:1/3", "redis://127.0.0.1:1/3"),
    "QS_LEDGER_URL": ("redis://127.0.0.1:1/4", "redis://127.0.0.1:1/4"),
    "QS_PROTOCOL": ("stream", "stream"),
    "QS_QUEUE": ("env-queue", "env-queue"),
    "QS_RUN_ID": ("env-run", "env-run"),
    "QS_RATE": ("12.5", 12.5),
    "QS_PAYLOAD_KB": ("2", 2.0),
    "QS_DRAIN": ("external", "external"),
    "QS_DRAIN_CONCURRENCY": ("3", 3),
    "QS_DRAIN_PROCESSES": ("2", 2),
    "QS_VISIBILITY_TIMEOUT": ("4.5", 4.5),
    "QS_WORK_MS": ("7", 7.0),
    "QS_GRACE": ("11", 11.0),
    "QS_MAX_DUPLICATED": ("5", 5),
    "QS_REPORT": ("env-verdict.json", "env-verdict.json"),
    "QS_EMBEDDED": ("fakeredis", "fakeredis"),
    "QS_AOF": ("true", True),
    "QS_FAULTS": ("env-faults.yaml", "env-faults.yaml"),
    "QS_WAIT_REPLICAS": ("1", 1),
    "QS_WAIT_TIMEOUT_MS": ("250", 250),
    "QS_LATENCY_MS": ("3", 3.0),
    "QS_JITTER_MS": ("1", 1.0),
    "QS_SCENARIO": ("env-scenario.yaml", "env-scenario.yaml"),
    "QS_WARMUP": ("2", 2.0),
    "QS_MAX_LOST": ("4", 4),
    "QS_MAX_ERROR_RATIO": ("0.25", 0.25),
    "QS_MIN_RATE": ("9", 9.0),
    "QS_LATENCY_LIMIT": ("enqueue:p95=50", "enqueue:p95=50"),
    "QS_CONNECTION_LIMIT": ("30", 30),
    "QS_TASKS_PER_SECOND": ("6", 6.0),
    "QS_MAX_FLATS": ("7", 7),
    "QS_BACKLOG_LIMIT": ("8", 8),
    "QS_FIND_CAPACITY": ("true", True),
    "QS_STEP_SECONDS": ("3", 3.0),
    "QS_CAPACITY_PRECISION": ("0.1", 0.1),
    "QS_CAPACITY_MAX_RATE": ("400", 400.0),
    "QS_CAPACITY_LATENCY_MS": ("200", 200.0),
    "QS_GENERATOR_INTERVAL_MS": ("20", 20.0),
    "QS_GENERATORS": ("2", 2),
    "QS_GENERATOR_CHECK_SECONDS": ("1.5", 1.5),
    "QS_GENERATOR_STOP_AFTER": ("3", 3.0),
    "QS_CONSUMER_WORK_MS": ("2-4", "2-4"),
    "QS_INVALID_RATIO": ("0.5", "0.5"),
    "QS_ERROR_QUEUE": ("env-errors", "env-errors"),
    "QS_STATS_LINE": ("1", 1.0),
    "QS_PLOT": ("env-run.png", "env-run.png"),
    "QS_BATCH": ("5", 5),
}


def locust_parser():
    from locust.argument_parser import LocustArgumentParser

    parser = LocustArgumentParser()
    add_arguments(parser)
    return parser


def declared_env_vars(parser) -> dict[str, str]:
    """Variable -> option dest, of every action that has one."""
    return {action.env_var: action.dest for action in parser._actions if getattr(action, "env_var", None)}


def test_every_locust_option_s_variable_sets_it_to_a_non_default_value(monkeypatch):
    parser = locust_parser()
    declared = declared_env_vars(parser)
    assert declared.keys() == LOCUST_ENV.keys()  # a new option's variable gets a line above
    defaults = parser.parse_args([])
    for name, (text, _) in LOCUST_ENV.items():
        monkeypatch.setenv(name, text)
    options = parser.parse_args([])
    for name, (_, expected) in LOCUST_ENV.items():
        dest = declared[name]
        assert getattr(options, dest) == expected and getattr(defaults, dest) != expected, name
    config = RunConfig.from_options(options)  # the run's configuration holds each of its own
    for name, (_, expected) in LOCUST_ENV.items():
        if declared[name] in RunConfig.__dataclass_fields__:
            assert getattr(config, declared[name]) == expected, name
    validate(config)
    assert options.redis_url == "redis://127.0.0.1:1/3"


@pytest.mark.parametrize("name, text, message", [
    ("QS_RATE", "fast", "--rate"),
    ("QS_DRAIN", "sometimes", "--drain"),
    ("QS_PAYLOAD_KB", "-1", "--payload-kb"),
])
def test_a_bad_variable_is_refused_naming_its_option(monkeypatch, capsys, name, text, message):
    monkeypatch.setenv(name, text)
    with pytest.raises(SystemExit) as exited:
        locust_parser().parse_args([])
    assert exited.value.code == 2 and message in capsys.readouterr().err


CLI_ENV = {
    "drain": {"REDIS_URL": ("redis_url", "redis://127.0.0.1:1/5", "redis://127.0.0.1:1/5"),
              "QS_LEDGER_URL": ("ledger_url", "redis://127.0.0.1:1/6", "redis://127.0.0.1:1/6"),
              "QS_PROTOCOL": ("protocol", "reliable", "reliable"),
              "QS_QUEUE": ("queue", "env-q", "env-q"),
              "QS_DRAIN_CONCURRENCY": ("concurrency", "3", 3),
              "QS_DRAIN_BATCH": ("batch", "7", 7),
              "QS_VISIBILITY_TIMEOUT": ("visibility_timeout", "2.5", 2.5)},
    "check": {"QS_RUN_ID": ("run_id", "env-run", "env-run"),
              "QS_LEDGER_URL": ("ledger_url", "redis://127.0.0.1:1/6", "redis://127.0.0.1:1/6"),
              "QS_REPORT": ("json_path", "env.json", "env.json"),
              "QS_MAX_DUPLICATED": ("max_duplicated", "4", 4),
              "QS_MAX_LOST": ("max_lost", "2", 2),
              "REDIS_URL": ("redis_url", "redis://127.0.0.1:1/5", "redis://127.0.0.1:1/5")},
    "clean": {"QS_RUN_ID": ("run_id", "env-run", "env-run"),
              "QS_LEDGER_URL": ("ledger_url", "redis://127.0.0.1:1/6", "redis://127.0.0.1:1/6")},
}


@pytest.mark.parametrize("command", list(CLI_ENV))
def test_every_cli_variable_sets_its_option(monkeypatch, command):
    required = ["--run-id", "x"] if command != "drain" else []
    defaults = vars(cli.parser().parse_args([command, *required]))
    for name, (_, text, _) in CLI_ENV[command].items():
        monkeypatch.setenv(name, text)
    options = vars(cli.parser().parse_args([command]))
    for name, (dest, _, expected) in CLI_ENV[command].items():
        assert options[dest] == expected and defaults[dest] != expected, name


def test_check_and_clean_find_the_ledger_through_redis_url_when_qs_ledger_url_is_unset(monkeypatch):
    monkeypatch.delenv("QS_LEDGER_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/7")
    for command in ("check", "clean"):
        assert cli.parser().parse_args([command, "--run-id", "x"]).ledger_url == "redis://127.0.0.1:1/7"


# what the web UI's start form sends for each per-test option (text, as a browser does), and what the test runs with
START_FORM = {
    "rate": ("40", 40.0), "payload_kb": ("2", 2.0), "grace": ("12", 12.0), "max_duplicated": ("3", 3),
    "max_lost": ("2", 2), "max_error_ratio": ("0.1", 0.1), "min_rate": ("5", 5.0),
    "latency_limit": ("enqueue:p99=80", "enqueue:p99=80"), "warmup": ("1", 1.0),
    "report": ("form-verdict.json", "form-verdict.json"), "connection_limit": ("25", 25),
    "find_capacity": ("on", True), "step_seconds": ("4", 4.0), "capacity_precision": ("0.2", 0.2),
    "capacity_max_rate": ("300", 300.0), "capacity_latency_ms": ("150", 150.0), "batch": ("10", 10),
}


def test_every_start_form_option_takes_a_non_default_value_and_only_those_change():
    assert START_FORM.keys() == set(PER_TEST)  # a new per-test option gets a line above
    config = RunConfig()
    form = {name: text for name, (text, _) in START_FORM.items()}
    # the fixed options are in the form too (shown, marked [fixed at startup]): a test started from it keeps them
    changed = apply_start_form(config, Namespace(**form, protocol="stream", queue="other", drain="off"))
    assert changed == sorted(START_FORM)
    for name, (_, expected) in START_FORM.items():
        assert getattr(config, name) == expected and getattr(RunConfig(), name) != expected, name
    assert (config.protocol, config.queue, config.drain) == (RunConfig().protocol, RunConfig().queue, "inline")
    assert apply_start_form(config, Namespace(**form)) == []  # the same form again changes nothing
    assert apply_start_form(config, Namespace(find_capacity="", max_error_ratio="")) == ["find_capacity",
                                                                                          "max_error_ratio"]
    assert config.find_capacity is False and config.max_error_ratio is None


def test_the_drain_and_check_clis_run_as_their_variables_say(r, redis_port, tmp_path):
    """No option on the command line: QS_PROTOCOL (not its default), QS_QUEUE, the ledger on another db, the
    drain's concurrency, batch and visibility timeout; then check's run id, report and --max-lost from the
    environment too, at the boundary: 2 jobs lost pass QS_MAX_LOST=2 and fail QS_MAX_LOST=1."""
    queue, run_id = f"env-{uuid.uuid4().hex[:8]}", f"env-{uuid.uuid4().hex[:8]}"
    ledger = redis.Redis(port=redis_port, db=1)
    enqueue_jobs(r, "reliable", queue, run_id, 12, ledger=ledger)
    r.rpop(queue, 2)  # two jobs gone from the queue before any drain: lost
    target_url, ledger_url = f"redis://127.0.0.1:{redis_port}/0", f"redis://127.0.0.1:{redis_port}/1"
    env = {"REDIS_URL": target_url, "QS_LEDGER_URL": ledger_url, "QS_PROTOCOL": "reliable", "QS_QUEUE": queue,
           "QS_DRAIN_CONCURRENCY": "2", "QS_DRAIN_BATCH": "3", "QS_VISIBILITY_TIMEOUT": "5",
           "QS_RUN_ID": run_id}
    drained = queuestorm("drain", "--until-empty", "--block", "0.3", env=env, timeout=60)
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout.strip().splitlines()[-1])["completed"] == 10
    assert r.llen(queue) == 0 and r.llen(make_protocol("reliable", queue).processing_key("x")) == 0
    assert not r.exists(f"queuestorm:{{{run_id}}}:completions")  # the ledger is where QS_LEDGER_URL said
    assert int(ledger.get(f"queuestorm:{{{run_id}}}:completions")) == 10
    ledger.close()
    report = tmp_path / "env-check.json"
    for max_lost, code in (("2", 0), ("1", 1)):
        checked = queuestorm("check", env={**env, "QS_REPORT": str(report), "QS_MAX_LOST": max_lost})
        assert checked.returncode == code, checked.stdout + checked.stderr
        doc = json.loads(report.read_text())
        assert (doc["run_id"], doc["lost"], doc["completed"]) == (run_id, 2, 10)
    cleaned = queuestorm("clean", env={"QS_RUN_ID": run_id, "QS_LEDGER_URL": ledger_url})
    assert cleaned.returncode == 0 and not redis.Redis(port=redis_port, db=1).keys(f"queuestorm:{{{run_id}}}:*")


def test_a_locust_run_configured_by_its_variables_follows_them(r, redis_url, tmp_path):
    """QS_PROTOCOL=stream (not the default list), QS_QUEUE, QS_RUN_ID, QS_RATE, QS_PAYLOAD_KB, QS_DRAIN_CONCURRENCY,
    QS_CONNECTION_LIMIT, QS_REPORT: the run enqueues 2 KB jobs on a stream at about the rate, and reports its peak
    connections beside the limit, which they stay under."""
    queue, run_id = f"env-{uuid.uuid4().hex[:8]}", f"env-{uuid.uuid4().hex[:8]}"
    report = tmp_path / "env-verdict.json"
    env = {"REDIS_URL": redis_url, "QS_PROTOCOL": "stream", "QS_QUEUE": queue, "QS_RUN_ID": run_id,
           "QS_RATE": "40", "QS_PAYLOAD_KB": "2", "QS_DRAIN_CONCURRENCY": "3", "QS_CONNECTION_LIMIT": "500",
           "QS_REPORT": str(report)}
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "3s", env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert (doc["run_id"], doc["protocol"], doc["verdict"]) == (run_id, "stream", "pass")
    assert doc["enqueued"] >= 40 and doc["completed"] == doc["enqueued"] and doc["lost"] == 0
    assert doc["connection_limit"] == 500 and 0 < doc["connections_peak"] <= 500
    assert r.type(queue) == b"stream"
    meta = {k.decode(): v.decode() for k, v in r.hgetall(f"queuestorm:{{{run_id}}}:meta").items()}
    assert (meta["protocol"], meta["queue"], float(meta["rate"]), float(meta["payload_kb"])) == ("stream", queue,
                                                                                                40.0, 2.0)
    assert 0.6 * 40 <= doc["achieved_rate"] <= 1.3 * 40, doc["achieved_rate"]


def test_the_connection_sampler_warns_from_90_percent_of_the_limit(r, redis_port, caplog):
    """The peak compared with --connection-limit at the boundary: 9 of 10 connections in use warn, 8 of 10 do not;
    the peak is what INFO clients says."""
    import math
    import time

    import gevent

    from queuestorm.connections import ConnectionSampler

    def sampled(client, limit):
        caplog.clear()
        sampler = ConnectionSampler(client, limit)
        sampler.start()
        deadline = time.monotonic() + 10
        while sampler.samples == 0 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        summary = sampler.stop()
        assert summary == {"connections_peak": sampler.peak, "connection_limit": limit}
        return sampler.peak, [rec.getMessage() for rec in caplog.records if "connections in use" in rec.getMessage()]

    base = int(r.info("clients")["connected_clients"])  # r itself included
    total = 9 * math.ceil((base + 1) / 9)  # with the sampler's own client and a few more: a multiple of 9
    limit = total * 10 // 9
    extra = [redis.Redis(port=redis_port, single_connection_client=True) for _ in range(total - base - 1)]
    for client in extra:
        client.ping()
    sampler_client = redis.Redis(port=redis_port, single_connection_client=True)
    try:
        peak, warnings = sampled(sampler_client, limit)
        assert peak == total and warnings == [f"{total} connections in use: 90% of the plan's {limit}"]
        extra.pop().close()
        peak, warnings = sampled(sampler_client, limit)
        assert peak == total - 1 and warnings == []
    finally:
        for client in extra + [sampler_client]:
            client.close()
    assert ConnectionSampler(r, 0).stop() == {"connections_peak": "-"}  # no sample, no figure, no limit
