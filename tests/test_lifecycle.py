"""However a run ends, its verdict is true: interrupts, web UI tests one after another, slow and dying drains."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis

from helpers import ROOT, free_port, locust

LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")


class Locust:
    """A Locust process whose output goes to a file, read as it grows to wait on its lines."""

    def __init__(self, *args, env=None, headless=True):
        full_env = dict(os.environ)
        for name in ("REDIS_URL", "QS_REPORT", "QS_RUN_ID", "QS_LEDGER_URL"):
            full_env.pop(name, None)
        full_env.update(env or {})
        command = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *(["--headless"] if headless else []), *args]
        self.log = tempfile.NamedTemporaryFile(prefix="queuestorm-lifecycle-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def lines(self) -> list[str]:
        with open(self.log.name, errors="replace") as f:
            return f.read().splitlines()

    def wait_until(self, found, what: str, timeout: float = 60):
        """Until `found(line)` is true of a line: returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            for line in self.lines:
                if found(line):
                    return line
            if exited or time.monotonic() > deadline:
                raise AssertionError(f"no line {what}; output:\n" + self.output()[-4000:])
            time.sleep(0.05)

    def wait_line(self, pattern: str, timeout: float = 60) -> str:
        return self.wait_until(lambda line: re.search(pattern, line), f"matching {pattern!r}", timeout)

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 90) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def saved_line(load: Locust, at_least: int = 1) -> dict:
    """Wait for a --stats-line line whose `saved` count has reached `at_least`."""
    line = load.wait_until(lambda line: line.startswith('{"saved"') and json.loads(line)["saved"] >= at_least,
                           f"with saved >= {at_least}")
    return json.loads(line)


def last_lines(load: Locust, n: int = 3) -> list[str]:
    return [line for line in load.lines if line.strip() and not line.startswith(" ")][-n:]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("where", ["external", "embedded"])
def test_an_interrupt_stops_the_load_and_ends_in_a_true_verdict(tmp_path, redis_url, queue, sig, where):
    report = tmp_path / "verdict.json"
    env = {"REDIS_URL": redis_url} if where == "external" else {}
    load = Locust("--users", "3", "--spawn-rate", "3", "--run-time", "60s", "--rate", "200", "--queue", queue,
                  "--stats-line", "1", "--only-summary", "--report", str(report), env=env)
    try:
        saved_line(load, 50)
        load.signal(sig)
        code = load.finish()
    finally:
        load.kill()
    doc = json.loads(report.read_text())
    assert code == 0, load.output()[-3000:]
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["enqueued"] >= 50
    assert doc["completed"] == doc["enqueued"]
    # the verdict is the last thing on screen, after Locust's final tables
    assert last_lines(load)[-1].startswith(("verdict: PASS", "note: ")), last_lines(load)
    assert "could not run" not in load.output()


def test_an_interrupted_run_that_failed_exits_1(tmp_path, redis_url, queue):
    load = Locust("--users", "2", "--spawn-rate", "2", "--run-time", "60s", "--rate", "100", "--queue", queue,
                  "--stats-line", "1", "--only-summary", "--min-rate", "100000", env={"REDIS_URL": redis_url})
    try:
        saved_line(load, 20)
        load.signal(signal.SIGINT)
        code = load.finish()
    finally:
        load.kill()
    assert code == 1, load.output()[-3000:]
    assert "verdict: FAIL: achieved rate" in load.output()


def test_a_second_interrupt_skips_the_check_and_exits_2(redis_url, queue):
    # a drain that cannot keep up (1 greenlet, 200 ms a job) keeps the run settling for the whole grace
    load = Locust("--users", "2", "--spawn-rate", "2", "--run-time", "60s", "--rate", "100", "--queue", queue,
                  "--stats-line", "1", "--only-summary", "--work-ms", "200", "--drain-concurrency", "1",
                  "--grace", "60", env={"REDIS_URL": redis_url})
    try:
        saved_line(load, 30)
        load.signal(signal.SIGINT)
        load.wait_line(r"settling: \d+ queued")
        load.signal(signal.SIGINT)
        code = load.finish()
    finally:
        load.kill()
    assert code == 2, load.output()[-3000:]
    assert "the loss check of run" in load.output() and "was skipped" in load.output()
    assert "verdict:" not in load.output()


def test_a_slow_drain_that_finishes_inside_grace_passes(tmp_path, redis_url, queue):
    """Seed-like slow work: 3 s a job, 5 at a time, one job a second: jobs are in flight when the load stops."""
    report = tmp_path / "verdict.json"
    result = locust("--users", "1", "--spawn-rate", "1", "--run-time", "4s", "--rate", "1", "--work-ms", "3000",
                    "--drain-concurrency", "5", "--grace", "10", "--queue", queue, "--report", str(report),
                    env={"REDIS_URL": redis_url}, timeout=90)
    doc = json.loads(report.read_text())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["unfinished"] == 0
    assert doc["enqueued"] >= 3 and doc["completed"] == doc["enqueued"]
    assert doc["settle_waited_s"] >= 1.0  # completions kept coming after the load stopped: it waited for them


def test_a_drain_stopped_before_the_queue_is_empty_reports_unfinished_not_lost(tmp_path, redis_url, queue, r):
    report = tmp_path / "verdict.json"
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--rate", "100", "--work-ms", "100",
                    "--drain-concurrency", "1", "--grace", "1", "--queue", queue, "--report", str(report),
                    env={"REDIS_URL": redis_url}, timeout=90)
    doc = json.loads(report.read_text())
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert doc["lost"] == 0 and doc["unfinished"] == r.llen(queue) > 0
    assert doc["unfinished"] + doc["completed"] == doc["enqueued"]
    assert f"{doc['unfinished']} job(s) unfinished: the drain did not finish within --grace 1s" in doc["reasons"]
    r.delete(queue)


def test_a_sigkilled_inline_drain_is_restarted_as_the_same_consumer(tmp_path, redis_url, queue):
    report = tmp_path / "verdict.json"
    load = Locust("--users", "2", "--spawn-rate", "2", "--run-time", "8s", "--rate", "100", "--queue", queue,
                  "--protocol", "reliable", "--visibility-timeout", "2", "--stats-line", "1", "--only-summary",
                  "--report", str(report), env={"REDIS_URL": redis_url})
    try:
        saved_line(load, 50)
        drains = subprocess.run(["pgrep", "-f", "--", f"--consumer-id inline-{load.proc.pid}-0"], capture_output=True,
                                text=True).stdout.split()
        assert len(drains) == 1
        os.kill(int(drains[0]), signal.SIGKILL)  # what the OOM killer does
        load.wait_line(r"inline drain process 0 exited with code -9: restarted")
        code = load.finish()
    finally:
        load.kill()
    doc = json.loads(report.read_text())
    assert code == 0, load.output()[-3000:]
    assert doc["lost"] == 0 and doc["drain_crashes"] == 1 and doc["completed"] == doc["enqueued"]


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post(url, fields=None):
    data = urllib.parse.urlencode(fields or {}).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as response:
        return json.load(response) if response.headers.get_content_type() == "application/json" else response.read()


def wait_for(fetch, until, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if until(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting; last answer: {str(last)[:2000]}")


def web_ui_up(base: str) -> bool:
    try:
        return bool(get_json(base + "/queuestorm/stats"))
    except urllib.error.HTTPError:
        raise  # the web UI answered, with an error: not one still starting
    except OSError:
        return False


def test_each_web_ui_test_is_its_own_run_with_its_own_verdict(redis_url, queue, r):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load = Locust("--web-host", "127.0.0.1", "--web-port", str(port), "--queue", queue, "--rate", "100",
                  env={"REDIS_URL": redis_url}, headless=False)
    run_ids = []
    try:
        wait_for(lambda: web_ui_up(base), bool)
        for test in range(3):
            assert post(base + "/swarm", {"user_count": 2, "spawn_rate": 2, "host": ""})["success"]
            live = wait_for(lambda: get_json(base + "/queuestorm/stats"),
                            lambda d: d["run_id"] not in run_ids and d["latest"] and d["latest"]["enqueued"] >= 30)
            post(base + "/stop")
            final = wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: d["verdict"] is not None)
            assert final["run_id"] == live["run_id"]
            assert final["verdict"]["verdict"] == "pass", load.output()[-3000:]
            assert final["verdict"]["lost"] == 0 and final["verdict"]["unfinished"] == 0
            assert final["verdict"]["completed"] == final["verdict"]["enqueued"] == final["latest"]["enqueued"]
            assert [h["run_id"] for h in final["history"]] == run_ids
            run_ids.append(final["run_id"])
            if test == 2:
                tab = get_json(base + "/stats/requests")["extended_stats"][0]["data"]
                assert [row["process"] for row in tab if row["process"].startswith("run ")] == [
                    f"run {run_ids[1]}: PASS", f"run {run_ids[0]}: PASS"]
        assert len(set(run_ids)) == 3
        for run_id in run_ids:  # each its own ledger
            assert r.exists(f"queuestorm:{{{run_id}}}:meta")
        load.signal(signal.SIGINT)
        code = load.finish(60)
    finally:
        load.kill()
    assert code == 0, load.output()[-3000:]
    assert load.output().count("verdict: PASS") == 3
    assert last_lines(load, 1)[0].startswith("queuestorm: run ") and last_lines(load, 1)[0].count("PASS") == 3


def test_an_idle_web_ui_exits_at_once_with_nothing_to_check(redis_url, queue, r):
    port = free_port()
    load = Locust("--web-host", "127.0.0.1", "--web-port", str(port), "--queue", queue,
                  env={"REDIS_URL": redis_url}, headless=False)
    try:
        wait_for(lambda: web_ui_up(f"http://127.0.0.1:{port}"), bool)
        started = time.monotonic()
        load.signal(signal.SIGINT)
        code = load.finish(30)
        took = time.monotonic() - started
    finally:
        load.kill()
    assert code == 0, load.output()[-3000:]
    assert took < 10, took  # no grace to wait out: nothing ran
    assert "loss check" not in load.output().lower() and "verdict" not in load.output()
    metas = [k for k in r.keys("queuestorm:{*}:meta") if r.type(k) == b"hash"]  # other tests leave broken ones
    assert all(r.hget(k, "queue") != queue.encode() for k in metas)


def test_ctrl_c_while_a_headless_master_waits_for_its_workers_exits_cleanly_and_stops_its_servers():
    """Locust itself has no Ctrl-C handling while it waits for --expect-workers: a KeyboardInterrupt traceback, and
    the embedded Redis and inline drains left behind."""
    load = Locust("--master", "--master-bind-port", str(free_port()), "--expect-workers", "1", "--users", "2",
                  "--run-time", "3s")
    try:
        port = int(load.wait_line(r"started by queuestorm on 127\.0\.0\.1:\d+").rsplit(":", 1)[1].split()[0])
        load.wait_line("inline drain process")
        load.signal(signal.SIGINT)
        code = load.finish(30)
    finally:
        load.kill()
    assert code == 0, load.output()[-3000:]
    assert "Traceback" not in load.output() and "nothing ran, nothing to check" in load.output()
    assert "[drain" not in load.output()  # the drains stopped before the server, not after it, complaining
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()


def test_the_shortened_dyno_scenario_stops_cleanly_and_prints_its_tables(tmp_path, redis_url):
    report = tmp_path / "verdict.json"
    result = locust("--scenario", os.path.join(ROOT, "scenarios", "dyno-concurrency.yaml"), "--run-time", "6s",
                    "--report", str(report), env={"REDIS_URL": redis_url}, timeout=120)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-4000:]
    assert "Messaging stats" in result.stdout and "Worker timings" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith(("verdict:", "note:"))
    doc = json.loads(report.read_text())
    # a loaded machine may reach the backlog limit and stop with tasks still on the workers' lists: unfinished
    assert doc["lost"] == 0 and doc["unfinished"] + doc["completed"] == doc["enqueued"]
    assert result.returncode == (0 if doc["verdict"] == "pass" else 1)
