"""bee-queue both ways against real bee-queue 2.x (Node, from npm): queuestorm saves jobs as Queue#save does and a
real bee-queue worker (wrapped by queuestorm's Node hook) runs them; bee-queue's own Queue saves jobs and
`queuestorm drain --protocol bee-queue` works them off; hand-deleted jobs are lost, exactly; dead workers' jobs come
back through bee-queue's stall check."""

import json
import signal
import time

from helpers import check_report, drain_until_empty, enqueue_jobs, kill_drain_holding, queuestorm, start_run
from nodejs import needs_node, run_node, start_node, wait_for

JOBS = 200


def bq(queue, name):
    return f"bq:{queue}:{name}"


def completions(r, run_id):
    return int(r.get(f"queuestorm:{{{run_id}}}:completions") or 0)


def save_with_bee_queue(r, redis_url, queue, run_id, count):
    """bee-queue's Queue saves `count` marked jobs; the ledger records each as enqueued once saved."""
    producer, _ = start_run(r, run_id, "bee-queue", queue)
    result = run_node("beequeue_produce.js", url=redis_url, queue=queue, run=run_id, producer=producer.producer_id,
                      count=count)
    assert json.loads(result.stdout) == {"saved": count}
    for _ in range(count):
        producer.enqueued(producer.next_seq())
    producer.close()


@needs_node
def test_queuestorm_saves_jobs_as_bee_queue_does(r, redis_url, queue, run_id):
    enqueue_jobs(r, "bee-queue", queue, run_id, 1)
    save_with_bee_queue(r, redis_url, queue, run_id + "b", 1)
    ours, theirs = (json.loads(r.hget(bq(queue, "jobs"), job_id)) for job_id in (b"1", b"2"))
    assert r.get(bq(queue, "id")) == b"2" and r.lrange(bq(queue, "waiting"), 0, -1) == [b"2", b"1"]
    assert ours["status"] == theirs["status"] == "created" and ours["progress"] == theirs["progress"] == 0
    assert list(ours["options"]) == ["timestamp", "stacktraces"] and ours["options"]["stacktraces"] == []
    assert list(theirs["options"]) == ["timestamp", "stacktraces", "retries", "timeout"]
    assert ours["data"]["run"] == run_id and ours["data"]["seq"] == 0


@needs_node
def test_a_real_bee_queue_worker_runs_queuestorm_jobs(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bee-queue", queue, run_id, JOBS)
    events = r.pubsub()
    events.subscribe(bq(queue, "events"))
    run_node("beequeue_worker.js", url=redis_url, queue=queue, run=run_id, until=JOBS, concurrency=20)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.scard(bq(queue, "succeeded")) == JOBS and r.llen(bq(queue, "active")) == 0
    assert json.loads(r.hget(bq(queue, "jobs"), b"1"))["status"] == "succeeded"
    assert doc["e2e_ms"]["p50"] is not None
    events.close()


@needs_node
def test_queuestorm_drains_jobs_bee_queue_saved(r, redis_url, queue, run_id, tmp_path):
    save_with_bee_queue(r, redis_url, queue, run_id, JOBS)
    events = r.pubsub()
    events.subscribe(bq(queue, "events"))
    wait_for(lambda: events.get_message(timeout=1) is not None, 10, "the subscription")
    final = drain_until_empty(redis_url, "bee-queue", queue)
    assert final["completed"] == JOBS
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.scard(bq(queue, "succeeded")) == JOBS and r.llen(bq(queue, "active")) == 0
    job = json.loads(r.hget(bq(queue, "jobs"), b"7"))
    assert job["status"] == "succeeded" and job["options"]["retries"] == 2 and job["options"]["timeout"] == 30000
    message = events.get_message(timeout=5)
    assert json.loads(message["data"])["event"] == "succeeded"
    events.close()


@needs_node
def test_jobs_deleted_by_hand_are_lost_exactly(r, redis_url, queue, run_id, tmp_path):
    deleted = 7
    save_with_bee_queue(r, redis_url, queue, run_id, 50)
    for job_id in r.lrange(bq(queue, "waiting"), 0, deleted - 1):
        r.lrem(bq(queue, "waiting"), 0, job_id)
        r.hdel(bq(queue, "jobs"), job_id)
    drain_until_empty(redis_url, "bee-queue", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code != 0 and (doc["completed"], doc["lost"], doc["unfinished"]) == (50 - deleted, deleted, 0)


@needs_node
def test_a_killed_bee_queue_worker_s_jobs_come_back_through_the_stall_check(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bee-queue", queue, run_id, 40)
    worker = start_node("beequeue_worker.js", env={"QS_WORK_MS": "300"}, url=redis_url, queue=queue, concurrency=8,
                        stall=1000)
    wait_for(lambda: completions(r, run_id) >= 10 and r.llen(bq(queue, "active")) >= 4, 60, "jobs in flight")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert doc["lost"] == 0 and doc["unfinished"] >= 4 and doc["completed"] + doc["unfinished"] == 40
    run_node("beequeue_worker.js", url=redis_url, queue=queue, run=run_id, until=40 + doc["duplicated"],
             concurrency=8, stall=1000)
    code, doc = check_report(redis_url, run_id, tmp_path, "--max-duplicated", "8")
    assert code == 0 and (doc["completed"], doc["lost"], doc["unfinished"]) == (40, 0, 0)


def test_a_killed_drain_s_jobs_come_back_through_the_stall_check(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bee-queue", queue, run_id, 30)
    kill_drain_holding(redis_url, "bee-queue", queue, lambda: r.llen(bq(queue, "active")) >= 5,
                       "--visibility-timeout", "1")
    assert r.llen(bq(queue, "active")) == 5
    drain_until_empty(redis_url, "bee-queue", queue, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (30, 0)
    assert r.llen(bq(queue, "active")) == 0 and r.scard(bq(queue, "succeeded")) == 30


def test_waiting_and_active_jobs_are_unfinished_not_lost(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bee-queue", queue, run_id, 10)
    for _ in range(3):
        r.rpoplpush(bq(queue, "waiting"), bq(queue, "active"))
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert (doc["lost"], doc["unfinished"]) == (0, 10)


def test_a_foreign_bee_queue_job_is_parked_and_restored_with_its_record(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "bee-queue", queue, run_id, 20)
    theirs = b'{"data":{"image":"cat.png"},"options":{"timestamp":1,"stacktraces":[],"retries":3},' \
             b'"status":"created","progress":0}'
    r.hset(bq(queue, "jobs"), "900", theirs)
    r.lpush(bq(queue, "waiting"), "900")
    final = drain_until_empty(redis_url, "bee-queue", queue)
    assert (final["completed"], final["foreign"]) == (20, 1)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [b"900"]
    assert r.hget(bq(queue, "jobs"), "900") == theirs and not r.sismember(bq(queue, "succeeded"), "900")
    assert r.llen(bq(queue, "active")) == 0
    result = queuestorm("foreign", "--redis-url", redis_url, "--protocol", "bee-queue", "--queue", queue, "--restore")
    assert result.returncode == 0 and "1 job(s) restored" in result.stdout
    assert r.lrange(bq(queue, "waiting"), 0, -1) == [b"900"] and r.hget(bq(queue, "jobs"), "900") == theirs
