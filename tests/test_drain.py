import io
import json
import signal
import subprocess
import sys
import time

import gevent
import redis

from queuestorm.drain import DrainWorker
from queuestorm.drain_fleet import DrainFleet
from queuestorm.jobs import JobEncoder
from queuestorm.ledger import Ledger

from helpers import ROOT, free_port, queuestorm, wait_until


def enqueue_jobs(r, run_id, queue, n, payload=10):
    ledger = Ledger(r, run_id)
    ledger.create_run({"protocol": "list", "queue": queue})
    producer = ledger.register_producer()
    encoder = JobEncoder(run_id, producer.producer_id, payload)
    for _ in range(n):
        seq = producer.next_seq()
        r.lpush(queue, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    return producer, encoder


def test_drain_until_empty_completes_every_job_and_parks_foreign_ones(r, redis_url, run_id, queue):
    enqueue_jobs(r, run_id, queue, 300)
    r.lpush(queue, b"not-a-queuestorm-job 12345")
    result = queuestorm("drain", "--redis-url", redis_url, "--queue", queue, "--concurrency", "8",
                        "--until-empty", "--block", "0.5", "--stats-interval", "0.5", timeout=60)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["final"] and final["completed"] == 300 and final["foreign"] == 1
    assert r.llen(queue) == 0
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [b"not-a-queuestorm-job 12345"]
    check = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "verdict: PASS" in check.stdout


def test_drain_with_several_processes_and_a_separate_ledger(r, redis_url, run_id, queue, redis_port):
    ledger_url = f"redis://127.0.0.1:{redis_port}/1"
    ledger_client = redis.Redis(port=redis_port, db=1)
    ledger = Ledger(ledger_client, run_id)
    ledger.create_run({"protocol": "list"})
    producer = ledger.register_producer()
    encoder = JobEncoder(run_id, producer.producer_id, 10)
    for _ in range(200):
        seq = producer.next_seq()
        r.lpush(queue, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    result = queuestorm("drain", "--redis-url", redis_url, "--ledger-url", ledger_url, "--queue", queue,
                        "--processes", "2", "--concurrency", "4", "--until-empty", "--block", "0.5", timeout=60)
    assert result.returncode == 0, result.stderr
    finals = [json.loads(line) for line in result.stdout.splitlines() if '"final"' in line]
    assert len(finals) == 2 and sum(f["completed"] for f in finals) == 200
    assert not r.exists(f"queuestorm:{{{run_id}}}:completions")  # nothing of the ledger on the target's db
    check = queuestorm("check", "--run-id", run_id, "--ledger-url", ledger_url, "--json", "/dev/stdout")
    assert check.returncode == 0, check.stdout


def test_sigterm_stops_gracefully_finishing_jobs_in_hand(r, redis_url, run_id, queue):
    enqueue_jobs(r, run_id, queue, 40)
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--queue", queue,
         "--concurrency", "4", "--work-ms", "100", "--block", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        wait_until(lambda: r.llen(queue) <= 30, "the drain to take 10 of the 40 jobs", 20)
    finally:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    completed = json.loads(out.strip().splitlines()[-1])["completed"]
    remaining = r.llen(queue)
    assert 0 < completed < 40 and completed + remaining == 40
    done = r.bitcount(f"queuestorm:{{{run_id}}}:p:1:done")
    assert done == completed  # every job taken off the queue was recorded before exit


def test_drain_errors_are_one_line_with_exit_2(redis_url, queue):
    bad = queuestorm("drain", "--redis-url", "redis://:secret@127.0.0.1:1/0", "--queue", queue)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "secret" not in bad.stderr and "cannot reach" in bad.stderr
    unknown = queuestorm("drain", "--redis-url", redis_url, "--protocol", "carrier-pigeon")
    assert unknown.returncode == 2 and "unknown protocol 'carrier-pigeon'" in unknown.stderr
    missing = queuestorm("drain")
    assert missing.returncode == 2 and "--redis-url" in missing.stderr


def test_check_and_clean_of_unknown_or_existing_runs(r, redis_url, run_id, queue):
    unknown = queuestorm("check", "--run-id", "no-such-run", "--ledger-url", redis_url)
    assert unknown.returncode == 2 and "unknown run id 'no-such-run'" in unknown.stderr
    enqueue_jobs(r, run_id, queue, 5)
    r.set("unrelated:key", "keep me")
    cleaned = queuestorm("clean", "--run-id", run_id, "--ledger-url", redis_url)
    assert cleaned.returncode == 0 and "deleted" in cleaned.stdout
    assert r.keys(f"queuestorm:{{{run_id}}}:*") == []
    assert r.get("unrelated:key") == b"keep me" and r.llen(queue) == 5


def test_plain_scripts_run_the_same_commands(r, redis_url, run_id, queue):
    from helpers import run_cli

    enqueue_jobs(r, run_id, queue, 20)
    drained = run_cli(sys.executable, "workers/drain.py", "--redis-url", redis_url, "--queue", queue,
                      "--until-empty", "--block", "0.5", timeout=60)
    assert drained.returncode == 0, drained.stderr
    checked = run_cli(sys.executable, "workers/check.py", "--run-id", run_id, "--ledger-url", redis_url)
    assert checked.returncode == 0 and "verdict: PASS" in checked.stdout


def test_a_drain_connection_refused_after_start_is_waited_out_not_fatal(r, redis_url, queue):
    """maxclients reached (or a restarting server) while a drain greenlet connects: it retries until let in."""
    worker = DrainWorker(redis_url, "list", queue, concurrency=1, out=io.StringIO())
    before = r.config_get("maxclients")["maxclients"]
    r.config_set("maxclients", len(r.client_list()))
    try:
        connecting = gevent.spawn(worker._connect, redis_url)
        wait_until(lambda: worker.errors >= 2, "two refused connection attempts", 10)  # refused, waited out, again
        assert not connecting.ready()
        assert "max number of clients reached" in worker.last_error
    finally:
        r.config_set("maxclients", before)
    client = connecting.get(timeout=5)
    assert client.ping()


def test_inline_drains_that_exit_on_their_own_are_restarted_but_not_those_a_fault_killed(r, redis_url, queue):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # each start exits 2 at once
    fleet = DrainFleet(unreachable, unreachable, "list", queue, processes=1, concurrency=1, work_ms=0,
                       visibility_timeout=30)
    fleet.start()
    try:
        fleet.processes[0].wait(30)
        assert fleet.restart_crashed() == [(0, 2)] and fleet.exit_codes == [2]
        fleet.processes[0].wait(30)
        fleet.env["REDIS_URL"] = fleet.env["QS_LEDGER_URL"] = redis_url
        assert fleet.restart_crashed() == [(0, 2)]
        r.lpush(queue, b"someone else's job")  # parked by the restarted drain once it consumes: it runs, reachable
        wait_until(lambda: r.llen(f"queuestorm:foreign:{queue}") == 1, "the restarted drain to consume", 30)
        assert fleet.alive() == 1
        assert fleet.kill(1) == [0]
        assert fleet.restart_crashed() == [] and fleet.alive() == 0
    finally:
        fleet.stop()
