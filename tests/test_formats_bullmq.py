"""BullMQ both ways against the real bullmq package: queuestorm enqueues through BullMQ's own addStandardJob script
and a real Python Worker (wrapped by queuestorm's hook) runs the jobs; BullMQ's Queue.add produces and
`queuestorm drain --protocol bullmq` works them through moveToActive / moveToFinished; a killed drain's jobs come
back through BullMQ's stalled-job check."""

import asyncio
import json
import subprocess
import sys

import pytest


from helpers import ROOT, check_report, drain_until_empty, enqueue_jobs, kill_drain_holding, start_run

bullmq = pytest.importorskip("bullmq")

JOBS = 300










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
    enqueue_jobs(r, "bullmq", queue, run_id, JOBS)
    assert r.llen(f"bull:{queue}:wait") == JOBS and r.xlen(f"bull:{queue}:events") > 0
    completions = f"queuestorm:{{{run_id}}}:completions"
    subprocess.run([sys.executable, "-c", PEER, redis_url, queue, completions, str(JOBS)], cwd=ROOT, timeout=120,
                   check=True)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.zcard(f"bull:{queue}:completed") == JOBS


def test_queuestorm_drains_jobs_bullmq_added(r, redis_url, queue, run_id, tmp_path):
    producer, encoder = start_run(r, run_id, "bullmq", queue)

    async def add_all():
        q = bullmq.Queue(queue, {"connection": redis_url})
        for _ in range(JOBS):
            seq = producer.next_seq()
            await q.add("job", json.loads(encoder.encode(seq)))
            producer.enqueued(seq)
        await q.close()

    asyncio.run(add_all())
    producer.close()
    drain_until_empty(redis_url, "bullmq", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.zcard(f"bull:{queue}:completed") == JOBS and r.llen(f"bull:{queue}:active") == 0


def test_a_killed_drain_s_jobs_come_back_through_the_stalled_check(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bullmq", queue, run_id, 30)
    kill_drain_holding(redis_url, "bullmq", queue, lambda: r.llen(f"bull:{queue}:active") >= 5,
                       "--visibility-timeout", "1")
    assert r.llen(f"bull:{queue}:active") == 5
    drain_until_empty(redis_url, "bullmq", queue, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (30, 0)
