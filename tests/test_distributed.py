"""A Locust master and workers as separate processes on 127.0.0.1, with an external drain: the whole fleet's run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, free_port

LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")
CLEAN_ENV = ("REDIS_URL", "QS_LEDGER_URL", "QS_PROTOCOL", "QS_QUEUE", "QS_RUN_ID", "QS_RATE", "QS_DRAIN",
             "QS_REPORT", "QS_EMBEDDED")


class Fleet:
    """Processes started by one test, each logging to its own file; all ended at teardown."""

    def __init__(self, tmp_path, redis_url):
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
        self.env["REDIS_URL"] = redis_url
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        self.procs[name] = proc
        return proc

    def master(self, *args: str) -> subprocess.Popen:
        return self.start("master", "-m", "locust", "-f", LOCUSTFILE, "--master", "--headless", "--only-summary",
                          "--master-bind-host", "127.0.0.1", "--master-bind-port", str(self.port), *args)

    def worker(self, name: str) -> subprocess.Popen:
        return self.start(name, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1",
                          "--master-port", str(self.port))

    def drain(self, queue: str) -> subprocess.Popen:
        return self.start("drain", "-m", "queuestorm", "drain", "--queue", queue, "--concurrency", "8")

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def fleet(tmp_path, redis_url):
    f = Fleet(tmp_path, redis_url)
    yield f
    f.stop()


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def producers(r, run_id) -> dict[int, dict]:
    out = {}
    for n in range(1, int(r.get(f"queuestorm:{{{run_id}}}:producers") or 0) + 1):
        info = r.hgetall(f"queuestorm:{{{run_id}}}:p:{n}")
        out[n] = {k.decode(): v.decode() for k, v in info.items()}
    return out


def test_master_two_workers_and_an_external_drain(fleet, tmp_path, r, queue, run_id):
    report = tmp_path / "verdict.json"
    drain = fleet.drain(queue)
    master = fleet.master("--expect-workers", "2", "--users", "6", "--spawn-rate", "6", "--run-time", "4s",
                          "--rate", "400", "--drain", "external", "--queue", queue, "--run-id", run_id,
                          "--report", str(report))
    workers = [fleet.worker("worker-a"), fleet.worker("worker-b")]
    assert master.wait(120) == 0, fleet.log("master")[-3000:]
    doc = json.loads(report.read_text())

    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["unexpected"] == 0
    assert doc["enqueued"] > 100 and doc["completed"] == doc["enqueued"] + doc["recovered"]
    # both workers' producers are in the ledger, one each, closed
    ledger = producers(r, run_id)
    assert sorted(int(p["pid"]) for p in ledger.values()) == sorted(w.pid for w in workers)
    assert all(p["closed"] == "1" for p in ledger.values())
    # the master's totals are the sum of the workers'
    rows = doc["workers"]
    assert sorted(w["pid"] for w in rows) == sorted(w.pid for w in workers)
    assert {w["producer"] for w in rows} == set(ledger)
    assert all(w["state"] == "stopped" for w in rows) and doc["workers_lost"] == []
    assert sum(w["enqueued"] for w in rows) == doc["enqueued"]
    assert sum(w["maybe_enqueued"] for w in rows) == doc["maybe_enqueued"]
    assert sum(w["requests"] for w in rows) == doc["locust_enqueue_requests"] > 0
    # the target rate is split across the workers
    assert [w["rate_share"] for w in rows] == [200.0, 200.0]
    # vitals of every process: the master, both workers, the external drain
    by_pid = {v["pid"]: v for v in doc["vitals"]}
    assert {master.pid, drain.pid, *(w.pid for w in workers)} <= set(by_pid)
    assert by_pid[master.pid]["role"] == "master"
    for proc in workers:
        vitals = by_pid[proc.pid]
        assert vitals["role"] == "worker" and vitals["samples"] >= 1 and vitals["rss_mb_max"] > 0
        assert vitals["ping_errors"] == 0 and vitals["ping_ms_mean"] > 0
    assert by_pid[drain.pid]["role"] == "drain" and by_pid[drain.pid]["completed"] == doc["completed"]
    out = fleet.log("master")
    assert "Locust workers" in out and "Processes" in out and "verdict: PASS" in out
    # the user table lists the classes in use, not every class of the locustfile with 0 users
    assert 'All users spawned: {"EnqueueUser": 6} (6 total users)' in out, out[-3000:]


def test_a_worker_joining_and_one_dying_mid_run(fleet, tmp_path, r, queue, run_id):
    """The rate is re-split when a worker joins and when one dies; the dead one is reported, nothing is lost."""
    report = tmp_path / "verdict.json"
    fleet.drain(queue)
    master = fleet.master("--expect-workers", "1", "--users", "4", "--spawn-rate", "4", "--run-time", "120s",
                          "--rate", "300", "--drain", "external", "--queue", queue, "--run-id", run_id,
                          "--report", str(report), "--grace", "20")
    first = fleet.worker("worker-a")
    wait_for(lambda: len(producers(r, run_id)) == 1, "the first worker's producer")
    second = fleet.worker("worker-b")
    wait_for(lambda: len(producers(r, run_id)) == 2, "the second worker's producer")
    second_producer = next(n for n, p in producers(r, run_id).items() if int(p["pid"]) == second.pid)
    key = f"queuestorm:{{{run_id}}}:p:{second_producer}"
    wait_for(lambda: int(r.hget(key, "issued") or 0) > 20, "the second worker to enqueue")
    second.send_signal(signal.SIGKILL)
    second.wait()
    before_the_kill = len(fleet.log("master"))
    # however long the master takes to notice (Locust's heartbeat), the test ends after the re-split, not at a guess
    wait_for(lambda: "1 worker(s) now: each enqueues 300.0/s" in fleet.log("master")[before_the_kill:],
             "the master to notice the death and give the first worker the whole target")
    master.send_signal(signal.SIGTERM)  # as Ctrl-C ends a run: the check runs, the exit code is the verdict's
    assert master.wait(120) == 0, fleet.log("master")[-3000:]
    doc = json.loads(report.read_text())

    assert doc["lost"] == 0 and doc["unexpected"] == 0 and doc["verdict"] == "pass"
    rows = {w["pid"]: w for w in doc["workers"]}
    assert rows[first.pid]["state"] == "stopped" and rows[second.pid]["state"] == "lost", fleet.log("worker-b") + fleet.log("master")[-3000:]
    assert doc["workers_lost"] == [rows[second.pid]["worker"]]
    assert doc["unclosed_producers"] == [second_producer]
    assert rows[second.pid]["rate_share"] == 150.0  # its share while both ran
    assert rows[first.pid]["rate_share"] == 300.0  # the whole target again once the other was gone
    assert "is gone mid-run" in fleet.log("master")
    assert first.pid in {v["pid"] for v in doc["vitals"]} and second.pid in {v["pid"] for v in doc["vitals"]}



def test_two_dynos_as_workers_of_one_master_report_every_worker(fleet, tmp_path):
    """Seed 003's two dynos: the scenario on the master picks DynoWorkerUser; the workers keep every class of the
    locustfile, each dyno sends its own --tasks-per-second and the master prints one table for the whole fleet."""
    report = tmp_path / "verdict.json"
    master = fleet.master("--scenario", os.path.join(ROOT, "scenarios", "dyno-concurrency.yaml"), "--expect-workers",
                          "2", "--users", "6", "--spawn-rate", "6", "--run-time", "4s", "--tasks-per-second", "100",
                          "--warmup", "0", "--report", str(report))
    fleet.worker("worker-a")
    fleet.worker("worker-b")
    assert master.wait(90) == 0, fleet.log("master")[-3000:]
    doc = json.loads(report.read_text())
    dyno = doc["dyno"]
    assert dyno["constants"]["NUM_WORKERS"] == 6 and doc["lost"] == 0
    assert len({w["pid"] for w in dyno["workers"]}) == 2  # both dynos' workers in the master's table
    m = dyno["messaging"]
    assert m["tasks_sent"] == m["tasks_completed"] == doc["enqueued"] > 0
    cycles = {pid: sum(w["cycles"] for w in dyno["workers"] if w["pid"] == pid) for pid in {w["pid"] for w in
                                                                                           dyno["workers"]}}
    assert len(cycles) == 2 and all(cycles.values()), cycles  # each dyno sent and worked tasks
    assert "status: Test succeeded" in fleet.log("master")


def test_the_master_runs_the_capacity_search_and_its_workers_follow_the_rate(fleet, tmp_path, queue, run_id):
    """--find-capacity over a master and two workers, against an inline drain of known capacity."""
    greenlets, work_ms = 8, 80
    bound = greenlets * 1000 / work_ms  # 100 jobs/s
    report = tmp_path / "verdict.json"
    master = fleet.master("--expect-workers", "2", "--users", "10", "--spawn-rate", "10", "--run-time", "120s",
                          "--find-capacity", "--rate", "60", "--step-seconds", "4", "--capacity-precision", "0.1",
                          "--work-ms", str(work_ms), "--drain-concurrency", str(greenlets), "--queue", queue,
                          "--run-id", run_id, "--latency-limit", "enqueue:p99=5000", "--report", str(report))
    fleet.worker("worker-a")
    fleet.worker("worker-b")
    assert master.wait(120) == 0, fleet.log("master")[-3000:]
    doc = json.loads(report.read_text())
    capacity = doc["capacity"]
    assert capacity["processes"] == 2 and capacity["confirmed"], capacity
    steps = capacity["steps"]
    assert [s["target"] for s in steps][:2] == [60, 120]
    for step in steps:  # the whole fleet's rate follows the master's target, step after step
        assert step["processes"] == 2 and 0.85 * step["target"] <= step["achieved"] <= 1.15 * step["target"], step
    assert capacity["limited_by"] == "drain" and capacity["limiting_factor"].startswith("drain fleet:"), capacity
    assert 0.85 * bound <= capacity["sustainable_rate"] <= bound, capacity
    assert capacity["first_failing_rate"] > capacity["sustainable_rate"]
    assert capacity["sustainable_per_process"] == round(capacity["sustainable_rate"] / 2, 1)
    rows = doc["workers"]
    assert len(rows) == 2 and all(w["enqueued"] > 0 and w["state"] == "stopped" for w in rows)
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["completed"] == doc["enqueued"] > 0
    assert "limiting factor: drain fleet:" in fleet.log("master")
