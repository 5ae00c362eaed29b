"""queuestorm's Node hook (hooks/node) records completions as the Python hooks do: the same bits, buckets,
duplicates; retried writes never counted twice; real BullMQ and bee-queue workers under queuestorm's load lose
nothing, even SIGKILLed."""

import json
import math
import random
import signal

import pytest

from queuestorm.jobs import JobEncoder
from queuestorm.latency import bucket_of

from helpers import check_report, enqueue_jobs, start_run
from nodejs import needs_node, run_node, start_node, wait_for

pytestmark = needs_node


def completions(r, run_id):
    return int(r.get(f"queuestorm:{{{run_id}}}:completions") or 0)


def test_latency_buckets_match_queuestorm_latency():
    """Equal, except where ln(ms) x 50 lies within an ulp of a half: V8's log and the C library's may round apart
    there, one bucket (2 %) off."""
    rng = random.Random(15)
    values = [0, 0.0001, 0.001, 1, 2.5, 1000, *(rng.uniform(0, 60000) for _ in range(300))]
    halves = [math.exp((b + 0.5) / 50) for b in range(-10, 600, 7)]
    shown = json.loads(run_node("hook_record.js", ms=",".join(repr(v) for v in values + halves)).stdout)
    assert shown[:len(values)] == [bucket_of(v) for v in values]
    assert all(abs(got - bucket_of(v)) <= 1 for got, v in zip(shown[len(values):], halves))


def test_a_second_completion_is_a_duplicate_and_a_retried_write_is_not(r, redis_url, run_id):
    producer, encoder = start_run(r, run_id, "bullmq", "q")
    bodies = [encoder.encode(producer.next_seq()).decode() for _ in range(2)]
    run_node("hook_record.js", url=redis_url, marker=bodies[0], times=2)
    run_node("hook_record.js", url=redis_url, marker=bodies[1], times=3, retry=1)
    base = f"queuestorm:{{{run_id}}}:p:{producer.producer_id}"
    assert r.getbit(base + ":done", 0) == r.getbit(base + ":done", 1) == 1
    assert r.hgetall(base + ":dup") == {b"0": b"1"}
    assert sum(int(n) for n in r.hgetall(f"queuestorm:{{{run_id}}}:e2e").values()) == 5


def test_a_real_bullmq_node_worker_runs_queuestorm_jobs(r, redis_url, queue, run_id, tmp_path):
    pytest.importorskip("bullmq")
    enqueue_jobs(r, "bullmq", queue, run_id, 300)
    run_node("bullmq_worker.js", url=redis_url, queue=queue, run=run_id, until=300, concurrency=20)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (300, 0, 0)
    assert r.zcard(f"bull:{queue}:completed") == 300


@pytest.mark.parametrize("library", ["bullmq", "bee-queue"])
def test_a_sigkilled_node_worker_leaves_duplicates_or_unfinished_never_lost(library, r, redis_url, queue, run_id,
                                                                            tmp_path):
    if library == "bullmq":
        pytest.importorskip("bullmq")
    script, active, fast = (("bullmq_worker.js", f"bull:{queue}:active", {"lock": 1000}) if library == "bullmq" else
                            ("beequeue_worker.js", f"bq:{queue}:active", {"stall": 1000}))
    jobs = 60
    enqueue_jobs(r, library, queue, run_id, jobs)
    worker = start_node(script, env={"QS_WORK_MS": "200"}, url=redis_url, queue=queue, concurrency=10, **fast)
    wait_for(lambda: completions(r, run_id) >= 15 and r.llen(active) >= 5, 60, "jobs in flight")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert doc["lost"] == 0 and doc["completed"] + doc["unfinished"] == jobs and doc["unfinished"] >= 5
    run_node(script, url=redis_url, queue=queue, run=run_id, until=jobs + doc["duplicated"], concurrency=10, **fast)
    code, doc = check_report(redis_url, run_id, tmp_path, "--max-duplicated", "10")
    assert code == 0 and (doc["completed"], doc["lost"], doc["unfinished"]) == (jobs, 0, 0)


def test_a_job_without_the_marker_is_run_and_not_recorded(r, redis_url, run_id):
    encoder = JobEncoder(run_id, 1, 0)
    assert encoder.encode(0).startswith(b'{"qs":')
    run_node("hook_record.js", ms="1")  # the module loads; markerOf ignores foreign data:
    result = run_node("hook_record.js", url=redis_url, marker='{"image":"cat.png"}', times=0)
    assert result.returncode == 0 and not r.keys(f"queuestorm:{{{run_id}}}:*")
