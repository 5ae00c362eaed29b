"""RQ both ways against the real rq package: queuestorm enqueues, a real SimpleWorker runs the jobs (its success
callback records completions); rq's Queue.enqueue produces, `queuestorm drain --protocol rq` works; a killed
worker's jobs are failed at their deadline, as RQ's started-registry cleanup does."""

import time
import zlib

import pytest

from queuestorm.jobs import JobEncoder, decode
from queuestorm.protocols import make_protocol
from queuestorm.protocols.rq import FUNC, marker_of

from helpers import check_report, kill_drain_holding, queuestorm, start_run

rq = pytest.importorskip("rq")

JOBS = 300






def test_a_real_rq_worker_runs_queuestorm_jobs(r, redis_url, queue, run_id, tmp_path):
    protocol = make_protocol("rq", queue)
    producer, encoder = start_run(r, run_id, "rq", queue)
    for _ in range(JOBS):
        seq = producer.next_seq()
        protocol.enqueue(r, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    rq_queue = rq.Queue(queue, connection=r)
    assert rq_queue.count == JOBS
    worker = rq.SimpleWorker([rq_queue], connection=r)
    assert worker.work(burst=True)
    assert rq_queue.count == 0 and rq_queue.finished_job_registry.count == JOBS
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)


def test_queuestorm_drains_jobs_rq_enqueued(r, redis_url, queue, run_id, tmp_path):
    from queuestorm.hooks.rq import work

    rq_queue = rq.Queue(queue, connection=r)
    producer, encoder = start_run(r, run_id, "rq", queue)
    jobs = []
    for _ in range(JOBS):
        seq = producer.next_seq()
        jobs.append(rq_queue.enqueue(work, encoder.encode(seq).decode()))
        producer.enqueued(seq)
    producer.close()
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", "rq", "--queue", queue, "--until-empty",
                        "--block", "0.3", "--concurrency", "4", timeout=60)
    assert result.returncode == 0, result.stderr
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert rq_queue.count == 0 and rq_queue.finished_job_registry.count == JOBS
    assert {job.get_status(refresh=True) for job in jobs} == {"finished"}
    assert r.llen(f"rq:queue:{queue}:intermediate") == 0 and r.zcard(f"rq:wip:{queue}") == 0


def test_a_killed_drain_s_jobs_are_failed_at_their_deadline_as_rq_does(r, redis_url, queue, run_id, tmp_path):
    protocol = make_protocol("rq", queue)
    producer, encoder = start_run(r, run_id, "rq", queue)
    for _ in range(30):
        seq = producer.next_seq()
        protocol.enqueue(r, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    kill_drain_holding(redis_url, "rq", queue, lambda: r.zcard(f"rq:wip:{queue}") >= 5)
    rq_queue = rq.Queue(queue, connection=r)
    held = [execution.rsplit(b":", 1)[0].decode() for execution in r.zrange(f"rq:wip:{queue}", 0, -1)]
    assert len(held) == 5 and {rq.job.Job.fetch(i, connection=r).get_status() for i in held} == {"started"}
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", "rq", "--queue", queue, "--until-empty",
                        "--block", "0.3", timeout=60)
    assert result.returncode == 0, result.stderr
    r.zadd(f"rq:wip:{queue}", {execution: 0 for execution in r.zrange(f"rq:wip:{queue}", 0, -1)})  # deadline passed
    protocol.recover_abandoned(r)
    assert sorted(rq_queue.failed_job_registry.get_job_ids()) == sorted(held)
    assert {rq.job.Job.fetch(i, connection=r).get_status() for i in held} == {"failed"}
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 1 and (doc["completed"], doc["lost"], doc["duplicated"]) == (25, 5, 0)


def test_a_job_stuck_in_the_intermediate_list_fails_after_a_minute_as_rq_does(r, queue, run_id):
    protocol = make_protocol("rq", queue)
    producer, encoder = start_run(r, run_id, "rq", queue)
    protocol.enqueue(r, encoder.encode(producer.next_seq()))
    job_id = r.lmove(f"rq:queue:{queue}", f"rq:queue:{queue}:intermediate")  # a fetch whose reply was lost
    r.rpush(f"rq:queue:{queue}:intermediate", "gone")  # a job hash that no longer exists
    protocol.recover_abandoned(r)  # first sighting
    assert r.lrange(f"rq:queue:{queue}:intermediate", 0, -1) == [job_id]
    r.set(f"rq:queue:{queue}:intermediate:first_seen:{job_id.decode()}", time.time() - 61)
    protocol.recover_abandoned(r)
    assert r.llen(f"rq:queue:{queue}:intermediate") == 0
    assert rq.Queue(queue, connection=r).failed_job_registry.get_job_ids() == [job_id.decode()]


@pytest.mark.parametrize("serializer", ["rq.serializers.DefaultSerializer", "rq.serializers.JSONSerializer"])
def test_the_marker_is_found_in_job_data_of_either_rq_serializer(serializer):
    body = JobEncoder("run-1", 2, 5).encode(9, now=1700000000.0)
    dumps = rq.utils.import_attribute(serializer).dumps
    data = zlib.compress(dumps((FUNC, None, [body.decode()], {})))
    assert decode(marker_of(data)) == decode(body)
    assert marker_of(zlib.compress(dumps(("app.tasks.other", None, [1, "x"], {})))) is None
