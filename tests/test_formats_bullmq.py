"""BullMQ both ways against the real bullmq package: queuestorm enqueues through BullMQ's own addStandardJob script
and a real Python Worker (wrapped by queuestorm's hook) runs the jobs; BullMQ's Queue.add produces and
`queuestorm drain --protocol bullmq` works them through moveToActive / moveToFinished; a killed drain's jobs come
back through BullMQ's stalled-job check."""

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest

from queuestorm.jobs import JobEncoder
from queuestorm.ledger import Ledger
from queuestorm.protocols import make_protocol

from helpers import ROOT, queuestorm

bullmq = pytest.importorskip("bullmq")

JOBS = 300


def start_run(r, run_id, queue):
    ledger = Ledger(r, run_id)
    ledger.create_run({"protocol": "bullmq", "queue": queue})
    producer = ledger.register_producer()
    return producer, JobEncoder(run_id, producer.producer_id, 10)


def enqueue(r, queue, run_id, n):
    protocol = make_protocol("bullmq", queue)
    producer, encoder = start_run(r, run_id, queue)
    for _ in range(n):
        seq = producer.next_seq()
        protocol.enqueue(r, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()


def check(redis_url, run_id, tmp_path):
    report = tmp_path / f"{run_id}.json"
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--json", str(report))
    with open(report) as f:
        return result.returncode, json.load(f)


def drain(redis_url, queue, *extra):
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", "bullmq", "--queue", queue, "--until-empty",
                        "--block", "0.3", "--concurrency", "4", *extra, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PEER = """
import asyncio, sys, redis
from bullmq import Worker
from queuestorm.hooks.bullmq import counted

async def main(url, queue, completions, jobs):
    worker = Worker(queue, counted(ledger_url=url), {"connection": url})
    r = redis.Redis.from_url(url)
    while int(r.get(completions) or 0) < jobs:
        await asyncio.sleep(0.2)
    await worker.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def test_a_real_bullmq_worker_runs_queuestorm_jobs(r, redis_url, queue, run_id, tmp_path):
    enqueue(r, queue, run_id, JOBS)
    assert r.llen(f"bull:{queue}:wait") == JOBS and r.xlen(f"bull:{queue}:events") > 0
    completions = f"queuestorm:{{{run_id}}}:completions"
    subprocess.run([sys.executable, "-c", PEER, redis_url, queue, completions, str(JOBS)], cwd=ROOT, timeout=120,
                   check=True)
    code, doc = check(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.zcard(f"bull:{queue}:completed") == JOBS


def test_queuestorm_drains_jobs_bullmq_added(r, redis_url, queue, run_id, tmp_path):
    producer, encoder = start_run(r, run_id, queue)

    async def add_all():
        q = bullmq.Queue(queue, {"connection": redis_url})
        for _ in range(JOBS):
            seq = producer.next_seq()
            await q.add("job", json.loads(encoder.encode(seq)))
            producer.enqueued(seq)
        await q.close()

    asyncio.run(add_all())
    producer.close()
    drain(redis_url, queue)
    code, doc = check(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.zcard(f"bull:{queue}:completed") == JOBS and r.llen(f"bull:{queue}:active") == 0


def test_a_killed_drain_s_jobs_come_back_through_the_stalled_check(r, redis_url, queue, run_id, tmp_path):
    enqueue(r, queue, run_id, 30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--protocol", "bullmq",
         "--queue", queue, "--concurrency", "5", "--work-ms", "5000", "--block", "0.3", "--visibility-timeout", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 20
    while r.llen(f"bull:{queue}:active") < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert r.llen(f"bull:{queue}:active") == 5
    drain(redis_url, queue, "--visibility-timeout", "1")
    code, doc = check(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (30, 0)
