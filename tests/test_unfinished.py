"""Unfinished is not lost: a confirmed job not completed but still queued, held in a processing list or pending,
or held by a live drain is unfinished; only one that is nowhere is lost. Against the real redis-server."""

import json
import shutil
import time

import pytest
import redis

from queuestorm import check, drain_reports
from queuestorm.check import check_run
from queuestorm.jobs import decode
from queuestorm.keys import RunKeys
from queuestorm.ledger import CompletionRecorder
from queuestorm.protocols import base, make_protocol
from queuestorm.protocols import bullmq as bullmq_format
from queuestorm.protocols import celery as celery_format
from queuestorm.protocols import rq as rq_format
from queuestorm.protocols import sidekiq as sidekiq_format
from queuestorm.protocols.list import ListProtocol

from helpers import check_report, enqueue_jobs, free_port, queuestorm, start_redis_server

JOBS = 20
COMPLETED = 5
HELD = 3  # fetched, never acknowledged: in a processing list, pending, wip, unacked or active
DELETED = 4
ACKED = ["reliable", "stream", "rq", "go-workers2", "celery", "bullmq"]
ALL = ["list", "sidekiq"] + ACKED


def ids(bodies) -> list[str]:
    return [job.job_id for job in sorted(map(decode, bodies), key=lambda job: job.seq)]


def seq_ids(seqs) -> list[str]:
    return [f"1-{seq}" for seq in sorted(seqs)]


def complete(r, protocol, deliveries):
    CompletionRecorder(r).record([(decode(d.body), 1.0) for d in deliveries])
    protocol.ack(r, deliveries)


def fetch(r, protocol, count):
    deliveries = protocol.fetch(r, 1, count)
    assert len(deliveries) == count and all(decode(d.body) for d in deliveries)
    return deliveries


def delete_queued(r, name, queue, n) -> list[bytes]:
    """n jobs taken off the queue by hand, nowhere any more; their bodies."""
    if name in ("list", "reliable"):
        return r.rpop(queue, n)
    if name == "stream":
        entries = r.xrevrange(queue, count=n)
        r.xdel(queue, *[entry_id for entry_id, _ in entries])
        return [fields[b"job"] for _, fields in entries]
    if name == "rq":
        return [rq_format.marker_of(r.hget(b"rq:job:" + job_id, "data")) for job_id in r.lpop(f"rq:queue:{queue}", n)]
    if name in ("sidekiq", "go-workers2"):
        return [sidekiq_format.marker_of(job) for job in r.rpop(f"queue:{queue}", n)]
    if name == "celery":
        return [celery_format.marker_of(json.loads(raw)) for raw in r.rpop(queue, n)]
    if name == "bullmq":
        return [bullmq_format.marker_of(r.hget(f"bull:{queue}:".encode() + job_id, "data"))
                for job_id in r.rpop(f"bull:{queue}:wait", n)]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ALL)
def test_queued_and_held_jobs_are_unfinished_and_deleted_ones_lost(name, r, queue, run_id, monkeypatch):
    if name == "bullmq":
        pytest.importorskip("bullmq")
    monkeypatch.setattr(base, "CHUNK", 7)  # every structure is read over several pages
    enqueue_jobs(r, name, queue, run_id, JOBS)
    consumer = make_protocol(name, queue, consumer_id="victim")
    consumer.start_consumer(r)
    done = fetch(r, consumer, COMPLETED)
    complete(r, consumer, done)
    held = fetch(r, consumer, HELD) if name in ACKED else []
    checker = make_protocol(name, queue)
    chunk_sizes = [len(chunk) for chunk in checker.unfinished_bodies(r)]
    assert max(chunk_sizes) <= 7 and sum(chunk_sizes) == JOBS - COMPLETED

    v = check_run(r, run_id, target=r, protocol=checker)
    open_seqs = set(range(JOBS)) - {decode(d.body).seq for d in done}
    assert (v.enqueued, v.completed, v.lost, v.unfinished) == (JOBS, COMPLETED, 0, JOBS - COMPLETED)
    assert v.unfinished_ids == seq_ids(open_seqs) and v.lost_ids == []
    assert set(ids(d.body for d in held)) <= set(v.unfinished_ids)
    assert v.verdict == "fail"
    assert v.reasons == [f"{JOBS - COMPLETED} job(s) unfinished (still queued or held by a consumer)"]

    deleted = ids(delete_queued(r, name, queue, DELETED))
    v = check_run(r, run_id, target=r, protocol=checker)
    assert (v.lost, v.unfinished) == (DELETED, JOBS - COMPLETED - DELETED)
    assert v.lost_ids == sorted(deleted, key=lambda i: int(i.split("-")[1]))
    assert sorted(v.lost_ids + v.unfinished_ids) == sorted(seq_ids(open_seqs))
    assert f"{DELETED} job(s) lost" in v.reasons


def test_without_the_redis_under_test_every_open_job_is_lost_as_before(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, JOBS)
    v = check_run(r, run_id)
    assert (v.lost, v.unfinished, v.unfinished_ids) == (JOBS, 0, [])
    assert v.lost_ids == seq_ids(range(JOBS)) and v.reasons == [f"{JOBS} job(s) lost"]


def test_more_queued_jobs_than_one_chunk_are_read_page_by_page(r, queue, run_id):
    n = 2 * base.CHUNK + 500
    enqueue_jobs(r, "list", queue, run_id, n)
    protocol = make_protocol("list", queue)
    sizes = [len(chunk) for chunk in protocol.unfinished_bodies(r)]
    assert sizes == [base.CHUNK, base.CHUNK, 500]
    r.rpop(queue, 1)  # the oldest job, seq 0
    v = check_run(r, run_id, target=r, protocol=protocol, id_limit=3)
    assert (v.unfinished, v.lost, v.lost_ids) == (n - 1, 1, ["1-0"])
    assert v.unfinished_ids == ["1-1", "1-2", "1-3"]


def test_a_processing_list_is_found_though_its_consumer_left_the_consumers_set(r, queue, run_id):
    queue += "[a]*"  # matched literally by the SCAN pattern
    enqueue_jobs(r, "reliable", queue, run_id, 6)
    gone = make_protocol("reliable", queue, consumer_id="gone*[x]")
    gone.start_consumer(r)
    fetch(r, gone, 4)
    r.zrem(gone.consumers_key, gone.consumer_id)
    r.rpush(f"queuestorm:reliable:{queue}x:processing:other", b"not this queue's")
    v = check_run(r, run_id, target=r, protocol=make_protocol("reliable", queue))
    assert (v.unfinished, v.lost) == (6, 0)


@pytest.mark.parametrize("name, will_run, dead", [
    ("sidekiq", "retry", "dead"),
    ("rq", "rq:scheduled:{q}", "rq:failed:{q}"),
    ("bullmq", "bull:{q}:delayed", "bull:{q}:failed"),
])
def test_jobs_the_library_will_still_run_are_unfinished_and_dead_ones_lost(name, will_run, dead, r, queue, run_id):
    if name == "bullmq":
        pytest.importorskip("bullmq")
    enqueue_jobs(r, name, queue, run_id, 4)
    waiting = {"sidekiq": f"queue:{queue}", "rq": f"rq:queue:{queue}", "bullmq": f"bull:{queue}:wait"}[name]
    first, second = r.lrange(waiting, 0, 1)
    r.lrem(waiting, 1, first)
    r.lrem(waiting, 1, second)
    r.zadd(will_run.format(q=queue), {first: time.time() + 3600})
    r.zadd(dead.format(q=queue), {second: time.time()})
    try:
        v = check_run(r, run_id, target=r, protocol=make_protocol(name, queue))
    finally:  # Sidekiq's retry and dead sets are the server's, not the queue's: later tests read them too
        r.zrem(will_run.format(q=queue), first)
        r.zrem(dead.format(q=queue), second)
    assert (v.unfinished, v.lost) == (3, 1)
    lost_seq = int(v.lost_ids[0].split("-")[1])
    assert v.unfinished_ids == seq_ids(set(range(4)) - {lost_seq})


def test_a_celery_message_on_a_priority_list_is_unfinished(r, queue, run_id):
    enqueue_jobs(r, "celery", queue, run_id, 2)
    r.lmove(queue, f"{queue}\x06\x169")
    v = check_run(r, run_id, target=r, protocol=make_protocol("celery", queue))
    assert (v.unfinished, v.lost) == (2, 0)


def publish_report(r, run_id, consumer, held_ids, final=False, age=0.0):
    drain_reports.publish(r, consumer, {run_id: {"name": consumer, "held": len(held_ids), "held_ids": held_ids,
                                                 "final": final}})
    if age:
        r.hset(RunKeys(run_id).drain(consumer), "updated_at", json.dumps(time.time() - age))


def test_jobs_a_live_drain_report_holds_are_unfinished(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 5)
    r.rpop(queue, 2)  # seqs 0 and 1: in a live drain's memory
    publish_report(r, run_id, "drain-live", ["1-0", "1-1", "garbage", "7-x"])
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.lost, v.unfinished_ids) == (5, 0, seq_ids(range(5)))


def test_jobs_a_stale_or_final_drain_report_held_are_lost(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 5)
    r.rpop(queue, 2)
    publish_report(r, run_id, "drain-stale", ["1-0"], age=check.LIVE_REPORT_SECONDS + 5)
    publish_report(r, run_id, "drain-final", ["1-1"], final=True)
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.lost, v.lost_ids) == (3, 2, ["1-0", "1-1"])


def test_the_second_pass_awaits_a_live_drain_s_next_report(r, queue, run_id, monkeypatch):
    """A job the drain popped after its last report: missing from the queue and from that report in the first pass,
    listed by the drain's next report, which the second pass waits for."""
    enqueue_jobs(r, "list", queue, run_id, 3)
    publish_report(r, run_id, "drain-a", [])
    r.rpop(queue)  # seq 0, popped after that report
    waits = []

    def drain_publishes_again():
        waits.append(1)
        publish_report(r, run_id, "drain-a", ["1-0"])
        r.hset(RunKeys(run_id).drain("drain-a"), "updated_at", json.dumps(time.time() + len(waits)))

    monkeypatch.setattr(check, "_poll_pause", drain_publishes_again)
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert waits and (v.unfinished, v.lost) == (3, 0)


class MovingDuringFirstPass(ListProtocol):
    """The oldest job is in a consumer's hands while the first pass reads the queue, then comes back (requeued),
    or is completed."""

    def __init__(self, queue, then_complete=False):
        super().__init__(queue)
        self.passes = 0
        self.then_complete = then_complete

    def unfinished_bodies(self, client):
        self.passes += 1
        if self.passes > 1:
            yield from super().unfinished_bodies(client)
            return
        body = client.rpop(self.queue)
        yield from super().unfinished_bodies(client)
        if self.then_complete:
            CompletionRecorder(client).record([(decode(body), 1.0)])
        else:
            client.rpush(self.queue, body)


def test_a_job_that_evades_the_first_pass_is_found_by_the_second(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 4)
    protocol = MovingDuringFirstPass(queue)
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 2 and (v.unfinished, v.lost) == (4, 0)


def test_a_job_completed_during_the_lookup_is_completed_not_lost(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 4)
    protocol = MovingDuringFirstPass(queue, then_complete=True)
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 1 and (v.completed, v.unfinished, v.lost) == (1, 3, 0)
    assert v.unfinished_ids == ["1-1", "1-2", "1-3"]


def test_a_job_missing_from_two_passes_is_lost_after_exactly_two(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 4)
    r.rpop(queue)
    protocol = MovingDuringFirstPass(queue)
    protocol.passes = 1  # behaves as a plain list from the first pass on
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 3 and (v.unfinished, v.lost, v.lost_ids) == (3, 1, ["1-0"])


def test_a_job_evading_the_first_pass_in_an_earlier_chunk_gets_its_second_pass(r, queue, run_id, monkeypatch):
    """The bitmaps read a byte at a time: what is missing is counted over every chunk, not the last one alone (whose
    jobs are all queued here), so seq 0, in a consumer's hands during the first pass, is found by the second."""
    monkeypatch.setattr(check, "CHUNK_BYTES", 1)
    enqueue_jobs(r, "list", queue, run_id, 16)
    protocol = MovingDuringFirstPass(queue)
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 2 and (v.unfinished, v.lost) == (16, 0)


def test_a_queued_job_marks_only_its_own_seq_found(r, queue, run_id):
    """Seq 0 still queued, seqs 1-7 (the same bitmap byte) taken and never completed: those seven are lost."""
    enqueue_jobs(r, "list", queue, run_id, 8)
    r.lpop(queue, 7)  # the newest seven: seq 0 is left
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.unfinished_ids, v.lost) == (1, ["1-0"], 7)


def test_a_queued_job_beyond_what_the_ledger_knows_of_its_producer_is_no_crash(r, queue, run_id):
    """A job of the run whose seq is past its producer's bitmaps (a ledger trimmed, a body forged): not found, no
    IndexError; the ledger's own jobs are classified as ever."""
    from queuestorm.jobs import JobEncoder

    enqueue_jobs(r, "list", queue, run_id, 5)  # one bitmap byte
    r.lpush(queue, JobEncoder(run_id, 1, 10).encode(8), JobEncoder(run_id, 1, 10).encode(9))  # bytes 1: past it
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.enqueued, v.unfinished, v.lost) == (5, 5, 0)


def test_a_drain_report_without_a_readable_time_is_not_live(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 3)
    r.rpop(queue)  # seq 0, held by a drain whose report cannot say when it was written
    publish_report(r, run_id, "drain-undated", ["1-0"])
    r.hset(RunKeys(run_id).drain("drain-undated"), "updated_at", json.dumps("soon"))
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.lost, v.lost_ids) == (2, 1, ["1-0"])


def test_a_drain_report_is_live_up_to_exactly_its_age_limit():
    now = 1000.0
    assert check._is_live({"updated_at": now - check.LIVE_REPORT_SECONDS}, now)
    assert not check._is_live({"updated_at": now - check.LIVE_REPORT_SECONDS - 0.001}, now)
    assert not check._is_live({"updated_at": now, "final": True}, now)
    assert not check._is_live({}, now)


def test_two_live_drains_each_speak_for_the_jobs_they_hold(r, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 4)
    r.rpop(queue, 2)  # seqs 0 and 1: one in each drain's memory
    publish_report(r, run_id, "drain-one", ["1-0"])
    publish_report(r, run_id, "drain-two", ["1-1"])
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.lost) == (4, 0)


class Scripted(ListProtocol):
    """A list whose lookup passes are scripted: `hidden[pass]` are the seqs in a consumer's hands (off the queue)
    while that pass reads it, back afterwards; `during[pass]()` runs once that pass has read the queue."""

    def __init__(self, queue, hidden=None, during=None):
        super().__init__(queue)
        self.passes, self.hidden, self.during = 0, hidden or {}, during or {}

    def unfinished_bodies(self, client):
        this = self.passes
        self.passes += 1
        bodies = client.lrange(self.queue, 0, -1)
        seen = [b for b in bodies if decode(b).seq not in self.hidden.get(this, ())]
        yield seen
        if this in self.during:
            self.during[this]()


def test_a_job_found_only_by_the_third_pass_is_unfinished_and_the_first_pass_never_ends_the_search(r, queue,
                                                                                                      run_id):
    """Seq 0 evades pass 1, seq 1 passes 1 and 2: each pass that finds something earns another, and a first pass
    that finds nothing is not the end (there is no earlier pass to compare with)."""
    enqueue_jobs(r, "list", queue, run_id, 2)
    protocol = Scripted(queue, hidden={0: {0, 1}, 1: {1}})
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 3 and (v.unfinished, v.lost) == (2, 0)


def test_completions_during_the_lookup_in_every_chunk_are_counted_with_those_before(r, queue, run_id, monkeypatch):
    """Bitmaps read a byte at a time; seqs 0-3 completed before the check (seq 1 a maybe-enqueued job: recovered),
    seqs 15, 17 (maybe-enqueued) and 23 completed while the first pass reads the queue, the last jobs of their
    bytes: every completion counted once, in its own byte, recovered ones too, none left open."""
    from queuestorm.jobs import JobEncoder
    from queuestorm.ledger import Ledger

    monkeypatch.setattr(check, "CHUNK_BYTES", 1)
    ledger = Ledger(r, run_id)
    ledger.create_run({"protocol": "list", "queue": queue})
    producer = ledger.register_producer()
    encoder = JobEncoder(run_id, producer.producer_id, 10)
    maybe = {1, 10, 17}
    for _ in range(24):
        seq = producer.next_seq()
        r.lpush(queue, encoder.encode(seq))
        (producer.maybe_enqueued if seq in maybe else producer.enqueued)(seq)
    producer.close()
    recorder = CompletionRecorder(r)

    def complete(seqs):
        bodies = [b for b in r.lrange(queue, 0, -1) if decode(b).seq in seqs]
        for body in bodies:
            r.lrem(queue, 1, body)
        recorder.record([(decode(b), 1.0) for b in bodies])

    complete({0, 1, 2, 3})
    late = {15, 17, 23}
    protocol = Scripted(queue, hidden={0: late}, during={0: lambda: complete(late)})
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert (v.completed, v.recovered, v.lost) == (7, 2, 0)
    assert v.unfinished == 24 - 7 and v.unfinished_ids == seq_ids(set(range(4, 24)) - late)


def test_a_drain_that_finishes_between_passes_leaves_what_it_held_found(r, queue, run_id):
    """A live drain holds seq 0 during the first pass, then publishes its final report: the second pass (seq 1 is
    nowhere) no longer waits on it, and seq 0 stays found."""
    enqueue_jobs(r, "list", queue, run_id, 3)
    r.rpop(queue, 2)  # seqs 0 and 1
    publish_report(r, run_id, "drain-done", ["1-0"])
    protocol = Scripted(queue, during={1: lambda: publish_report(r, run_id, "drain-done", [], final=True)})
    v = check_run(r, run_id, target=r, protocol=protocol)
    assert protocol.passes == 2 and (v.unfinished, v.lost, v.lost_ids) == (2, 1, ["1-1"])


@pytest.fixture
def target():
    proc, port, directory = start_redis_server()
    client = redis.Redis(port=port)
    yield client, f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


def test_check_cli_looks_up_the_run_s_queue_on_the_redis_under_test(r, redis_url, target, queue, run_id, tmp_path):
    target_client, target_url = target
    enqueue_jobs(target_client, "reliable", queue, run_id, 10, ledger=r)
    consumer = make_protocol("reliable", queue, consumer_id="victim")
    fetch(target_client, consumer, 2)

    code, doc = check_report(redis_url, run_id, tmp_path, "--redis-url", target_url)
    assert code == 1 and (doc["unfinished"], doc["lost"]) == (10, 0)
    assert doc["unfinished_ids"] == seq_ids(range(10))
    assert "10 job(s) unfinished (still queued or held by a consumer)" in doc["reasons"]

    code, doc = check_report(redis_url, run_id, tmp_path)  # the ledger's server holds no queue: all lost
    assert code == 1 and (doc["unfinished"], doc["lost"]) == (0, 10)

    target_client.delete(queue, consumer.processing)
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--redis-url", target_url,
                        "--max-lost", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| unfinished (still queued or held)" in result.stdout and "verdict: PASS" in result.stdout
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--redis-url", target_url,
                        env={"QS_MAX_LOST": "9"})
    assert result.returncode == 1 and "10 job(s) lost (allowed: 9)" in result.stdout


def test_check_cli_with_an_unreachable_redis_under_test_says_so_in_one_line(r, redis_url, queue, run_id):
    enqueue_jobs(r, "list", queue, run_id, 1)
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url,
                        "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot reach Redis under test" in result.stderr


def test_tasks_waiting_on_a_dyno_worker_s_list_are_unfinished(r, queue, run_id):
    """Seed 003's harness sends each task to its dyno worker's own list under the run's prefix: a task still there
    at check time (the run stopped before the workers took it) is unfinished, one deleted from it is lost."""
    from helpers import start_run

    producer, encoder = start_run(r, run_id, "list", queue)
    tasks = RunKeys(run_id).dyno_worker(producer.producer_id, 0) + ":tasks"
    for _ in range(6):
        seq = producer.next_seq()
        r.lpush(tasks, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    r.rpop(tasks)  # the oldest, seq 0, gone by hand
    v = check_run(r, run_id, target=r, protocol=make_protocol("list", queue))
    assert (v.unfinished, v.lost, v.lost_ids) == (5, 1, ["1-0"])
