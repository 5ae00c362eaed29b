"""Each protocol end to end, and what each loses when a drain process is SIGKILLed holding jobs."""

import signal
import subprocess
import sys
import time

import psutil
import pytest
import redis

from queuestorm.protocols import PROTOCOLS, make_protocol

from helpers import ROOT, check_report, drain_until_empty, enqueue_jobs, read_line, wait_until









@pytest.mark.parametrize("protocol", list(PROTOCOLS))  # the generic contract: every registered protocol
def test_every_job_completes_exactly_once(protocol, r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, protocol, queue, run_id, 500)
    final = drain_until_empty(redis_url, protocol, queue)
    assert final["completed"] == 500
    code, doc = check_report(redis_url, run_id, tmp_path, "--max-duplicated", "1000")
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (500, 0, 0)
    assert make_protocol(protocol, queue).depth(r) == 0


def in_flight(r, protocol, queue, consumer):
    if protocol == "list":
        return 30 - r.llen(queue)
    if protocol == "reliable":
        return r.llen(f"queuestorm:reliable:{queue}:processing:{consumer}")
    try:
        return r.xpending(queue, "queuestorm")["pending"]
    except redis.ResponseError:  # the drain has not created its group yet
        return 0


@pytest.mark.parametrize("protocol, restart_as", [
    ("list", "same"), ("reliable", "same"), ("reliable", "other"), ("stream", "same"), ("stream", "other"),
])
def test_sigkill_of_a_drain_holding_jobs(protocol, restart_as, r, redis_url, queue, run_id, tmp_path):
    """list loses exactly the jobs in flight; reliable and stream lose none, whether the same consumer id comes
    back (it takes its own jobs back at once) or another consumer reaps them after the visibility timeout."""
    enqueue_jobs(r, protocol, queue, run_id, 30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--protocol", protocol,
         "--queue", queue, "--concurrency", "5", "--work-ms", "5000", "--block", "0.3",
         "--consumer-id", "victim", "--visibility-timeout", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        wait_until(lambda: in_flight(r, protocol, queue, "victim") >= 5, "the drain to hold 5 jobs", 20)
        held = in_flight(r, protocol, queue, "victim")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert held == 5

    consumer = "victim" if restart_as == "same" else "rescuer"
    final = drain_until_empty(redis_url, protocol, queue, "--consumer-id", consumer, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path, "--max-duplicated", "1000")
    if protocol == "list":
        assert code == 1 and doc["lost"] == held and doc["completed"] == 30 - held
    else:
        assert code == 0 and doc["lost"] == 0 and doc["completed"] == 30
        assert final["recovered"] == held
    assert doc["unexpected"] == 0
    assert make_protocol(protocol, queue).depth(r) == 0


@pytest.mark.parametrize("protocol", ["reliable", "stream"])
def test_fakeredis_non_blocking_fetches_do_not_busy_spin(protocol, queue):
    """fakeredis answers BLMOVE and XREADGROUP BLOCK at once: an idle drain must still sleep between fetches."""
    from queuestorm.embedded import EmbeddedRedis

    server = EmbeddedRedis("fakeredis")
    url = server.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "queuestorm", "drain", "--redis-url", url, "--protocol", protocol,
             "--queue", queue, "--concurrency", "2", "--block", "1", "--stats-interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )
        try:
            # its first stats line: the consumers are spawned and the monitor ticks (start-up's CPU is behind us)
            assert '"completed": 0' in read_line(proc.stdout, "the idle drain's first stats line")
            before = psutil.Process(proc.pid).cpu_times()
            time.sleep(3)  # the measurement window itself, not a wait for readiness
            after = psutil.Process(proc.pid).cpu_times()
        finally:
            proc.send_signal(signal.SIGTERM)
        proc.stdout.read()
        assert proc.wait(10) == 0
        cpu = (after.user - before.user) + (after.system - before.system)
        assert cpu < 0.5, cpu  # a busy-spinning loop would burn ~3 s of CPU in 3 s
    finally:
        server.stop()


def test_reliable_returns_a_job_whose_fetch_reply_was_lost_but_never_one_in_hand(r, queue):
    """BLMOVE applied on the server, its reply lost with the connection: the job sits in a live consumer's
    processing list that no reaper will touch. The consumer's own sweep returns it, after two sightings."""
    protocol = make_protocol("reliable", queue, "c1")
    r.rpush(protocol.processing, b"orphan", b"in-hand")
    returned, suspects = protocol.sweep_orphans(r, {b"in-hand"}, set())
    assert returned == 0 and suspects == {b"orphan"}  # first sighting: its fetch may still be on its way back
    returned, suspects = protocol.sweep_orphans(r, {b"in-hand"}, suspects)
    assert returned == 1 and suspects == set()
    assert r.lrange(queue, 0, -1) == [b"orphan"] and r.lrange(protocol.processing, 0, -1) == [b"in-hand"]
    assert protocol.sweep_orphans(r, set(), set()) == (0, {b"in-hand"})
