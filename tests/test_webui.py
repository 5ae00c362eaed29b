"""The queue figures of the web UI: the timeline's points from a known ledger, and /queuestorm/stats of a real run."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from queuestorm.jobs import JobRef
from queuestorm.ledger import CompletionRecorder
from queuestorm.protocols import make_protocol
from queuestorm.timeline import Timeline, sum_counts
from queuestorm.webui import process_rows

from helpers import ROOT, free_port
from test_drain import enqueue_jobs


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_points_carry_depth_rates_completions_duplicates_and_latency(r, run_id, queue):
    producer, _ = enqueue_jobs(r, run_id, queue, 50)
    counts = {"enqueued": 50, "maybe_enqueued": 2, "requests": 52, "failures": 2, "dropped": 0}
    clock = Clock()
    faults = [{"kind": "pause", "at_s": 0.5, "duration_s": 1}]
    timeline = Timeline(r, r, run_id, make_protocol("list", queue), lambda: sum_counts([counts]),
                        faults=lambda: faults, clock=clock)
    timeline.start()
    timeline.stop()
    clock.now += 2
    first = timeline.sample()
    assert first["t"] == 2 and first["depth"] == 50 and first["enqueued"] == 50 and first["maybe_enqueued"] == 2
    assert first["completed"] == 0 and first["unaccounted"] == 0 and first["e2e_ms"]["p50"] is None
    assert first["enqueue_rate"] == 25.0 and first["faults"] == 1

    for _ in range(20):  # the drain takes 20 jobs, completes them (3 of them twice, one a third time) in 10-90 ms
        r.rpop(queue)
    jobs = [(JobRef(run_id, producer.producer_id, seq, 0.0), ms) for seq, ms in
            zip(range(20), [10.0] * 10 + [40.0] * 8 + [90.0] * 2)]
    recorder = CompletionRecorder(r)
    recorder.record(jobs)
    assert recorder.record(jobs[:3]) == 3 and recorder.record(jobs[:1]) == 1
    clock.now += 4
    second = timeline.sample()
    assert second["depth"] == 30 and second["completed"] == 20 and second["duplicated"] == 3
    assert second["drain_rate"] == 5.0 and second["enqueue_rate"] == 0.0
    assert 9.5 < second["e2e_ms"]["p50"] < 10.5 and 88 < second["e2e_ms"]["p99"] < 92

    clock.now += 1
    third = timeline.sample()  # no completions in this second: no latency to show, not the run's old figures
    assert third["e2e_ms"]["p50"] is None and third["drain_rate"] == 0.0

    timeline.finish({"verdict": "fail", "lost": 30}, [{"name": "locust", "rss_mb_last": 60.0}])
    doc = timeline.snapshot(state="stopped")
    assert [p["t"] for p in doc["points"]] == [2, 6, 7, 7]
    assert doc["verdict"]["lost"] == 30 and doc["faults"] == faults and doc["latest"] == doc["points"][-1]
    assert doc["latest"]["lost"] == 30 and all("lost" not in p for p in doc["points"][:-1])
    json.dumps(doc)


def test_points_are_bounded(r, run_id, queue):
    timeline = Timeline(r, r, run_id, make_protocol("list", queue), lambda: sum_counts([]), max_points=5)
    for _ in range(12):
        timeline.sample()
    assert len(timeline.points) == 5


def test_queue_tab_rows_show_the_queue_every_process_and_the_verdict():
    doc = {"protocol": "list", "latest": {"depth": 7, "completed": 90},
           "processes": [{"name": "inline-0", "host": "h", "pid": 3, "rss_mb_last": 40.0, "rss_mb_max": 41.0,
                          "cpu_pct_mean": 10.0, "cpu_pct_max": 12.0, "lag_ms_mean": 1.0, "lag_ms_max": 2.0,
                          "ping_ms_mean": 0.3, "completed": 90}],
           "verdict": {"verdict": "fail", "lost": 2, "duplicated": 1, "completed": 90}}
    rows = process_rows(doc)
    assert rows[0]["backlog"] == 7 and rows[0]["completed"] == 90
    assert rows[1]["process"] == "inline-0" and rows[1]["memory"] == "40.0 / 41.0" and rows[1]["ping"] == 0.3
    assert rows[2]["process"] == "verdict: FAIL" and rows[2]["memory"] == "lost 2"


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def start_web_run(port, *args, env=None):
    """Locust with its web UI, started at once (--autostart) and quitting a while after the run (--autoquit)."""
    full_env = dict(os.environ, **(env or {}))
    for name in ("REDIS_URL", "QS_REPORT", "QS_RUN_ID"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), "--autostart",
         "--web-host", "127.0.0.1", "--web-port", str(port), *args],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(fetch, until, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fetch()
            if until(last):
                return last
        except urllib.error.HTTPError:
            raise  # the server answered, with an error (a 500): not a server still starting
        except OSError:
            pass  # nothing listens yet
        time.sleep(0.3)
    raise AssertionError(f"gave up waiting; last answer: {str(last)[:2000]}")


def test_wait_for_fails_at_once_on_an_http_500_instead_of_waiting_it_out():
    import http.server
    import threading

    import pytest

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(500, "stats exploded")

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as raised:
            wait_for(lambda: get_json(f"http://127.0.0.1:{server.server_port}/queuestorm/stats"), lambda d: True,
                     timeout=20)
        assert raised.value.code == 500 and time.monotonic() - started < 10
    finally:
        server.shutdown()
        server.server_close()


def stop_test(base):
    with urllib.request.urlopen(urllib.request.Request(base + "/stop", method="POST"), timeout=5) as response:
        assert json.load(response)["success"]


def test_stats_endpoint_serves_the_run_live_and_its_verdict_at_the_end(tmp_path, redis_url, queue, run_id):
    """The live checks happen while the test runs, however slow this machine is: the test runs until this test
    stops it from the web UI (as a user's Stop button does), then the verdict comes."""
    report = tmp_path / "verdict.json"
    port = free_port()
    proc = start_web_run(port, "--users", "3", "--spawn-rate", "3", "--run-time", "120s", "--rate", "100",
                         "--autoquit", "30", "--queue", queue, "--report", str(report),
                         env={"REDIS_URL": redis_url, "QS_RUN_ID": run_id})
    base = f"http://127.0.0.1:{port}"
    try:
        live = wait_for(lambda: get_json(base + "/queuestorm/stats"),
                        lambda d: len(d["points"]) >= 2 and d["latest"]["completed"] > 0)
        assert live["run_id"] == run_id and live["protocol"] == "list" and live["verdict"] is None
        assert live["state"] in ("spawning", "running")
        newer = get_json(base + f"/queuestorm/stats?since={live['points'][0]['t']}")["points"]
        assert newer and all(p["t"] > live["points"][0]["t"] for p in newer)
        tab = wait_for(lambda: get_json(base + "/stats/requests")["extended_stats"],  # the drain's vitals: within 1 s
                       lambda t: {"locust", f"inline-{proc.pid}-0"} <= {row["process"] for row in t[0]["data"]})
        assert tab[0]["key"] == "queue" and tab[0]["data"][0]["process"] == "queue (list)"
        with urllib.request.urlopen(base + "/queuestorm/", timeout=5) as page:
            assert b"qscharts.js" in page.read()
        with urllib.request.urlopen(base + "/queuestorm/static/qscharts.js", timeout=5) as script:
            assert b"QSCharts" in script.read()
        loaded = wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: len(d["points"]) >= 4)
        stop_test(base)
        final = wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: d["verdict"] is not None)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    verdict = json.loads(report.read_text())
    assert verdict["verdict"] == "pass", output[-3000:]
    shown = final["verdict"]
    for key in ("verdict", "enqueued", "completed", "lost", "duplicated", "maybe_enqueued", "lost_ids", "e2e_ms"):
        assert shown[key] == verdict[key], key
    last = final["points"][-1]
    assert last["enqueued"] == verdict["enqueued"] and last["completed"] == verdict["completed"]
    assert last["depth"] == 0 and last["duplicated"] == 0 and last["unaccounted"] == 0 and last["lost"] == 0
    first, stopped = loaded["points"][1], loaded["points"][-1]  # the first point holds the users' start-up
    mean_rate = (stopped["enqueued"] - first["enqueued"]) / (stopped["t"] - first["t"])
    assert 70 <= mean_rate <= 130, loaded["points"]  # --rate 100, over whole seconds of the load
    names = {p["name"] for p in final["processes"]}
    assert {"locust", f"inline-{proc.pid}-0"} <= names


def test_start_form_shows_every_option_and_its_per_test_values_take_effect(tmp_path, r, redis_url, queue):
    """The web UI's start form lists queuestorm's options with their help; a test started from it with --rate 40,
    --payload-kb 2 and --max-duplicated 3 runs at 40/s with 2 KB jobs, judged with that allowance."""
    port = free_port()
    report = tmp_path / "verdict.json"
    full_env = dict(os.environ, REDIS_URL=redis_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), "--web-host",
         "127.0.0.1", "--web-port", str(port), "--queue", queue, "--rate", "500"],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        page = wait_for(lambda: urllib.request.urlopen(base + "/", timeout=5).read().decode(), lambda p: True)
        args = json.loads(page.split("templateArgs = ", 1)[1].split("\n", 1)[0].rstrip(";"))
        extra = args["extra_options"]
        assert extra["rate"]["default_value"] == 500 and "enqueues per second" in extra["rate"]["help_text"]
        assert extra["drain"]["choices"] == ["inline", "external", "users", "off"]
        assert extra["redis_url"]["is_secret"] and extra["redis_url"]["help_text"].endswith("[fixed at startup]")
        assert {"payload_kb", "batch", "grace", "max_lost", "faults", "plot"} <= extra.keys()
        assert args["extended_tabs"] == [{"title": "Queue", "key": "queue"}]
        # the Host field shows the Redis under test: no "no host attribute set" hint, meaningless here
        assert args["host"] == redis_url and not args["missing_host_warning"]

        form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 2, "host": "", "run_time": "3s",
                                       "rate": "40", "report": str(report), "payload_kb": "2",
                                       "max_duplicated": "3"}).encode()
        with urllib.request.urlopen(base + "/swarm", data=form, timeout=5) as response:
            assert json.load(response)["success"]
        final = wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: d["verdict"] is not None)
        with urllib.request.urlopen(base + "/stats/report", timeout=10) as response:
            assert b'id="queuestorm-report"' in response.read()  # the web UI's Download Report
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "start form: this test runs with --max-duplicated 3, --payload-kb 2.0, --rate 40.0" in output, \
        output[-3000:]
    meta = r.hgetall(f"queuestorm:{{{final['run_id']}}}:meta")
    assert float(meta[b"payload_kb"]) == 2.0 and float(meta[b"rate"]) == 40.0
    assert json.loads(report.read_text())["max_duplicated"] == 3
    assert final["verdict"]["verdict"] == "pass"
    assert 25 <= final["verdict"]["achieved_rate"] <= 50, final["verdict"]
    assert json.loads(report.read_text())["verdict"] == "pass"


def test_a_bad_start_form_value_changes_nothing():
    from argparse import Namespace

    import pytest
    from queuestorm.errors import UsageError
    from queuestorm.options import RunConfig, apply_start_form

    config = RunConfig(rate=10.0)
    assert apply_start_form(config, Namespace(rate="20", max_error_ratio="", grace="30")) == ["rate"]
    assert config.rate == 20.0 and config.max_error_ratio is None
    with pytest.raises(UsageError, match="--max-error-ratio: must be at most 1"):
        apply_start_form(config, Namespace(rate="5", max_error_ratio="2"))
    assert config.rate == 20.0 and config.max_error_ratio is None
    with pytest.raises(UsageError, match="--grace: expected a number, got 'soon'"):
        apply_start_form(config, Namespace(grace="soon"))


def test_the_start_forms_options_are_derived_once_and_each_render_gets_its_own_copy(monkeypatch):
    from locust import argument_parser

    from queuestorm import plugin  # noqa: F401  (adds queuestorm's options to Locust's parser, as a locustfile does)
    from queuestorm.locust.start_form import derive_start_form_options_once
    from queuestorm.webui import mask_secrets

    monkeypatch.setattr(argument_parser, "ui_extra_args_dict", argument_parser.ui_extra_args_dict)  # undone after
    monkeypatch.setattr(sys, "argv", ["locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"),
                                      "--redis-url", "redis://:hunter2@127.0.0.1:1/0"])
    built = []
    get_parser = argument_parser.get_parser
    monkeypatch.setattr(argument_parser, "get_parser", lambda *a, **kw: built.append(1) or get_parser(*a, **kw))
    derive_start_form_options_once()
    derive_start_form_options_once()
    first = {"extra_options": argument_parser.ui_extra_args_dict()}
    mask_secrets(first)
    second = argument_parser.ui_extra_args_dict()
    assert len(built) == 1
    assert first["extra_options"]["redis_url"]["default_value"] == "redis://:***@127.0.0.1:1/0"
    assert second["redis_url"]["default_value"] == "redis://:hunter2@127.0.0.1:1/0"  # the masking did not stick
    assert set(second) == set(first["extra_options"]) and "rate" in second
