"""gocraft/work's layout, against fixtures derived from its source (enqueue.go, worker.go, redis.go,
dead_pool_reaper.go, heartbeater.go): jobs as Go's Enqueuer writes them are drained with its locks kept balanced; a
dead pool's in-progress jobs come back through the reaper; no Go toolchain needed."""

import json
import time

from queuestorm.jobs import JobEncoder, decode
from queuestorm.protocols import make_protocol

from helpers import check_report, drain_until_empty, enqueue_jobs, kill_drain_holding, queuestorm, start_run
from nodejs import wait_for

JOBS = 30


def go_job(name, args, job_id="0123456789abcdef01234567", t=1764630000):
    """work.Job as Go's json.Marshal writes it: name, id, t, args (map keys sorted)."""
    return json.dumps({"name": name, "id": job_id, "t": t, "args": dict(sorted(args.items()))},
                      separators=(",", ":")).encode()


def go_enqueue(r, namespace, name, body: bytes, n):
    """Enqueuer.Enqueue: LPUSH the job, SADD known_jobs."""
    r.lpush(f"{namespace}:jobs:{name}", go_job(name, json.loads(body), job_id=f"{n:024x}"))
    r.sadd(f"{namespace}:known_jobs", name)


def test_queuestorm_enqueues_as_gocraft_s_enqueuer(r, queue, run_id):
    enqueue_jobs(r, "gocraft", f"app/{queue}", run_id, 2)
    raw = r.lrange(f"app:jobs:{queue}", 0, -1)
    job = json.loads(raw[0])
    assert list(job) == ["name", "id", "t", "args"] and job["name"] == queue and len(job["id"]) == 24
    assert isinstance(job["t"], int) and list(job["args"]) == sorted(job["args"]) and job["args"]["run"] == run_id
    assert r.smembers("app:known_jobs") == {queue.encode()}


def test_jobs_go_s_enqueuer_wrote_are_drained_with_balanced_locks(r, redis_url, queue, run_id, tmp_path):
    producer, encoder = start_run(r, run_id, "gocraft", queue)
    for n in range(JOBS):
        seq = producer.next_seq()
        go_enqueue(r, "work", queue, encoder.encode(seq), n)
        producer.enqueued(seq)
    producer.close()
    r.lpush(f"work:jobs:{queue}", go_job(queue, {"addr": "test@example.com"}, job_id="f" * 24))
    final = drain_until_empty(redis_url, "gocraft", queue, "--consumer-id", "pool1")
    assert (final["completed"], final["foreign"]) == (JOBS, 1)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.get(f"work:jobs:{queue}:lock") == b"0" and r.hget(f"work:jobs:{queue}:lock_info", "pool1") == b"0"
    assert r.llen(f"work:jobs:{queue}:pool1:inprogress") == 0
    assert queuestorm("foreign", "--redis-url", redis_url, "--protocol", "gocraft", "--queue", queue,
                      "--restore").returncode == 0
    assert json.loads(r.lindex(f"work:jobs:{queue}", 0))["args"] == {"addr": "test@example.com"}


def dead_pool(r, queue, run_id, pool, held, heartbeat=True):
    """A pool that died holding `held` jobs, as gocraft leaves it: in-progress list, lock counts, its heartbeat."""
    producer, encoder = start_run(r, run_id, "gocraft", queue)
    for n in range(held):
        seq = producer.next_seq()
        r.lpush(f"work:jobs:{queue}:{pool}:inprogress", go_job(queue, json.loads(encoder.encode(seq)), f"{n:024x}"))
        producer.enqueued(seq)
    producer.close()
    r.set(f"work:jobs:{queue}:lock", held)
    r.hset(f"work:jobs:{queue}:lock_info", pool, held)
    r.sadd("work:worker_pools", pool)
    if heartbeat:
        r.hset(f"work:worker_pools:{pool}", mapping={"heartbeat_at": int(time.time()) - 60, "job_names": queue,
                                                     "concurrency": 5})


def test_the_reaper_returns_a_dead_pool_s_jobs_and_cleans_its_locks(r, redis_url, queue, run_id, tmp_path):
    dead_pool(r, queue, run_id, "deadpool", 5)
    drain_until_empty(redis_url, "gocraft", queue, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (5, 0)
    assert not r.sismember("work:worker_pools", "deadpool") and not r.exists("work:worker_pools:deadpool")
    assert r.hget(f"work:jobs:{queue}:lock_info", "deadpool") is None
    assert int(r.get(f"work:jobs:{queue}:lock")) == 0


def test_a_pool_whose_heartbeat_expired_keeps_its_jobs_unfinished(r, redis_url, queue, run_id, tmp_path):
    dead_pool(r, queue, run_id, "gone", 4, heartbeat=False)
    protocol = make_protocol("gocraft", queue, "reaper", 1)
    assert protocol.recover_abandoned(r) == 0
    assert r.llen(f"work:jobs:{queue}:gone:inprogress") == 4 and int(r.get(f"work:jobs:{queue}:lock")) == 0
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert (doc["lost"], doc["unfinished"]) == (0, 4)


def test_a_paused_or_capped_job_type_is_not_fetched(r, queue, run_id):
    enqueue_jobs(r, "gocraft", queue, run_id, 3)
    protocol = make_protocol("gocraft", queue, "pool1")
    r.set(f"work:jobs:{queue}:paused", "1")
    assert protocol.fetch(r, 0.1) == []
    r.delete(f"work:jobs:{queue}:paused")
    r.set(f"work:jobs:{queue}:max_concurrency", 1)
    assert len(protocol.fetch(r, 0.1, count=3)) == 1 and protocol.fetch(r, 0.1) == []


def test_a_killed_drain_s_jobs_come_back_through_the_reaper(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "gocraft", queue, run_id, JOBS)
    kill_drain_holding(redis_url, "gocraft", queue, lambda: int(r.get(f"work:jobs:{queue}:lock") or 0) >= 5,
                       "--visibility-timeout", "1", "--consumer-id", "victim")
    assert r.llen(f"work:jobs:{queue}:victim:inprogress") == 5
    beat = int(r.hget("work:worker_pools:victim", "heartbeat_at"))
    wait_for(lambda: time.time() > beat + 1, 5, "the victim's last heartbeat (whole seconds) to pass the dead time")
    drain_until_empty(redis_url, "gocraft", queue, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (JOBS, 0)


def test_the_marker_reads_back_from_go_s_sorted_args(run_id):
    from queuestorm.protocols.gocraft import marker_of

    # Go re-encodes a float at its shortest: the time's trailing zero goes, the job it names stays the same
    for now in (1796188482.668080, 1796188482.5, 1796188482.123456):
        body = JobEncoder(run_id, 3, 4).encode(7, now=now)
        marker = marker_of(go_job("x", json.loads(body)))
        assert decode(marker) == decode(body) and json.loads(marker) == json.loads(body)
        assert marker.startswith(body.split(b'"enqueued_at"')[0])  # the marker's fields first, in their order
