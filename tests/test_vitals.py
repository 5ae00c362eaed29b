"""Vitals: what one process measures of itself, and how drain processes publish theirs through the ledger."""

import json
import signal
import subprocess
import sys
import time

import gevent
from queuestorm import drain_reports
from queuestorm.vitals import VitalsSampler, cpu_seconds, rss_bytes

from helpers import ROOT, queuestorm, read_line, wait_until
from test_drain import enqueue_jobs


def test_sampler_measures_memory_growth_cpu_lag_and_ping(redis_url):
    sampler = VitalsSampler("worker", ping_url=redis_url)
    sampler.sample()
    hoard = [bytearray(1024 * 1024) for _ in range(40)]  # 40 MB held: the growth must show it
    for block in hoard:
        block[::4096] = b"x" * len(block[::4096])
    wall, cpu = time.monotonic(), cpu_seconds()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # a CPU-bound stretch, which also starves the loop
        pass
    measured = (cpu_seconds() - cpu) / (time.monotonic() - wall) * 100  # this test's own figure for the stretch
    sampler.sample()
    s = sampler.summary()
    # the second sample's window holds the hoarding and the stretch: its CPU share is the stretch's, near enough
    assert abs(sampler.cpu.last - measured) < 25 and measured > 20, (sampler.cpu.last, measured)
    assert s["samples"] == 2 and s["role"] == "worker" and s["pid"] > 0 and s["host"]
    assert s["rss_growth_mb"] >= 35, s
    assert s["rss_mb_max"] >= s["rss_mb_first"] + 35
    assert s["cpu_pct_max"] >= round(sampler.cpu.last, 1) - 0.1  # the summary rounds
    assert s["ping_ms_mean"] > 0 and s["ping_errors"] == 0
    del hoard


def test_lag_probe_sees_a_blocked_event_loop():
    sampler = VitalsSampler("drain").start()
    gevent.sleep(0)  # the probe greenlet runs to its first sleep
    busy_until = time.monotonic() + 0.3
    while time.monotonic() < busy_until:  # holds the loop, as CPU-bound work or an unpatched blocking call would
        pass
    deadline = time.monotonic() + 10
    while sampler._window_lag == 0 and time.monotonic() < deadline:  # until the probe wakes, late
        gevent.sleep(0.01)
    sampler.stop()
    s = sampler.summary()
    assert s["lag_ms_max"] >= 150, s
    assert s["ping_ms_mean"] is None  # no Redis to ping


def test_unreachable_redis_counts_ping_errors():
    sampler = VitalsSampler("master", ping_url="redis://127.0.0.1:1/0")
    sampler.sample()
    assert sampler.summary()["ping_errors"] == 1


def test_rss_is_read_for_this_process():
    assert rss_bytes() > 1024 * 1024


def test_drain_processes_publish_vitals_and_throughput_per_run(tmp_path, r, redis_url, run_id, queue):
    drain = subprocess.Popen([sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--queue", queue,
                              "--processes", "2", "--concurrency", "4", "--batch", "1", "--stats-interval", "0.2"],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    started = set()
    try:
        while len(started) < 2:  # both processes up and blocked on the queue: jobs pushed one by one reach both
            started.add(json.loads(read_line(drain.stdout, "a stats line of each drain process"))["drain"])
        enqueue_jobs(r, run_id, queue, 200)
        wait_until(lambda: int(r.get(f"queuestorm:{{{run_id}}}:completions") or 0) >= 200, "200 completions", 60)
    finally:
        drain.send_signal(signal.SIGTERM)
    out, _ = drain.communicate(timeout=30)
    assert drain.returncode == 0
    reports = drain_reports.read(r, run_id)
    assert len(reports) == 2, reports
    assert sum(rep["completed"] for rep in reports) == 200
    assert {rep["pid"] for rep in reports} == started
    for rep in reports:
        assert rep["role"] == "drain" and rep["final"] is True
        assert rep["samples"] >= 1 and rep["rss_mb_max"] > 0 and rep["ping_errors"] == 0
    check = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--json", str(tmp_path / "v.json"))
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.split("Processes\n", 1)[1].splitlines()  # border, header, border, rows, border
    end = next(i for i in range(3, len(lines)) if lines[i].startswith("+"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[3:end]]
    table = "\n".join(lines[:end + 1])
    shown = {(row[0], row[2], row[8]) for row in rows}  # process, pid, completed
    assert {(rep["name"], str(rep["pid"]), str(rep["completed"])) for rep in reports} <= shown, table
    assert {v["pid"] for v in json.loads((tmp_path / "v.json").read_text())["vitals"]} == started
    key = f"queuestorm:{{{run_id}}}:drain:{reports[0]['name']}"
    assert 0 < r.ttl(key) <= drain_reports.REPORT_TTL
    assert r.ttl(f"queuestorm:{{{run_id}}}:drains") > 0
    assert not list(r.scan_iter(match="queuestorm:drain*"))  # every report lives under its run's prefix


def test_reports_round_trip_typed_values(r, run_id):
    drain_reports.publish(r, "host-1", {run_id: {"completed": 5, "rss_mb_max": 12.5, "final": False, "x": None}})
    [rep] = drain_reports.read(r, run_id)
    assert (rep["completed"], rep["rss_mb_max"], rep["final"], rep["x"], rep["name"]) == (5, 12.5, False, None,
                                                                                         "host-1")
    assert isinstance(rep["updated_at"], float)
    assert drain_reports.read(r, "no-such-run") == []
