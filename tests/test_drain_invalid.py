"""A job the ledger cannot record (issue 12, item 6) is parked alone: the rest of its batch completes, the drain lives
on and exits 1."""

import json

import pytest

from queuestorm.jobs import JobEncoder
from queuestorm.protocols import make_protocol
from queuestorm.protocols.stream import unpack_entry

from helpers import check_report, queuestorm, start_run

POISON_SEQ = 2**40  # past BITFIELD's largest offset


def drain(redis_url, protocol, queue, *extra):
    """One greenlet taking batches of 50 until the queue is empty; (exit code, final stats line, stderr)."""
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", protocol, "--queue", queue, "--until-empty",
                        "--block", "0.3", "--concurrency", "1", "--batch", "50", *extra, timeout=60)
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def enqueue_around(r, protocol_name, queue, run_id, bad_bodies, good=49):
    """`good` recorded jobs with the bad bodies in their middle, as one batch's worth."""
    protocol = make_protocol(protocol_name, queue)
    producer, encoder = start_run(r, run_id, protocol_name, queue)
    bodies = []
    for _ in range(good):
        seq = producer.next_seq()
        bodies.append(encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    bodies[good // 2:good // 2] = bad_bodies(encoder)
    for body in bodies:
        protocol.enqueue(r, body)


def parked_bodies(r, protocol, queue):
    parked = r.lrange(f"queuestorm:invalid:{queue}", 0, -1)
    if protocol == "stream":
        return [unpack_entry(entry)[1][b"job"] for entry in parked]
    return parked


def assert_nothing_left(r, protocol, queue):
    if protocol == "stream":
        assert r.xlen(queue) == 0 and r.xpending(queue, "queuestorm")["pending"] == 0
    else:
        assert r.llen(queue) == 0
    if protocol == "reliable":
        assert not r.keys(f"queuestorm:reliable:{queue}:processing:*")


@pytest.mark.parametrize("protocol", ["list", "reliable", "stream"])
def test_a_poison_job_in_a_batch_of_50_is_parked_and_every_other_job_completes(protocol, r, redis_url, queue,
                                                                               run_id, tmp_path):
    poison = []
    enqueue_around(r, protocol, queue, run_id, lambda encoder: poison.append(encoder.encode(POISON_SEQ)) or poison)
    code, final, stderr = drain(redis_url, protocol, queue)
    assert code == 1, stderr
    assert (final["completed"], final["invalid"], final["foreign"]) == (49, 1, 0)
    assert "sequence number out of range" in stderr and "Traceback" not in stderr
    assert parked_bodies(r, protocol, queue) == poison  # whole, byte for byte
    assert int(r.get(f"queuestorm:{{{run_id}}}:invalid")) == 1
    assert_nothing_left(r, protocol, queue)
    check_code, doc = check_report(redis_url, run_id, tmp_path)
    assert (doc["completed"], doc["lost"], doc["duplicated"], doc["invalid"]) == (49, 0, 0, 1)
    assert check_code == 1 and doc["reasons"] == [
        "1 job(s) of this run could not be recorded: parked whole as invalid (queuestorm foreign --invalid lists them)"]


def test_a_drain_that_recorded_everything_exits_0(r, redis_url, queue, run_id):
    enqueue_around(r, "list", queue, run_id, lambda encoder: [])
    code, final, stderr = drain(redis_url, "list", queue)
    assert code == 0, stderr
    assert (final["completed"], final["invalid"]) == (49, 0)
    assert not r.exists(f"queuestorm:{{{run_id}}}:invalid", f"queuestorm:invalid:{queue}")


def test_an_unknown_producer_an_unknown_run_and_an_unparseable_marker_are_parked_not_foreign(r, redis_url, queue,
                                                                                              run_id, tmp_path):
    bad = [JobEncoder(run_id, 99, 5).encode(0),  # the run registered one producer
           JobEncoder("no-such-run", 1, 5).encode(0),
           b'{"qs":1,"run":"%s","producer":1,"seq":"not a number"' % run_id.encode()]
    enqueue_around(r, "reliable", queue, run_id, lambda encoder: bad)
    r.lpush(queue, b"someone else's job")
    code, final, stderr = drain(redis_url, "reliable", queue)
    assert code == 1
    assert (final["completed"], final["invalid"], final["foreign"]) == (49, 3, 1)
    assert "unknown producer" in stderr and "unknown run" in stderr and "marker that does not parse" in stderr
    assert sorted(r.lrange(f"queuestorm:invalid:{queue}", 0, -1)) == sorted(bad)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [b"someone else's job"]
    assert int(r.get(f"queuestorm:{{{run_id}}}:invalid")) == 2  # the unknown run's job counts under no run
    assert not r.keys("queuestorm:{no-such-run}:*")  # neither a counter nor a drain report for a run that is not
    check_code, doc = check_report(redis_url, run_id, tmp_path)
    assert check_code == 1 and (doc["completed"], doc["lost"], doc["invalid"]) == (49, 0, 2)


def test_a_producer_registered_after_the_drain_met_the_run_is_known(r, redis_url, queue, run_id):
    from queuestorm.ledger import Ledger

    enqueue_around(r, "list", queue, run_id, lambda encoder: [])
    code, _, _ = drain(redis_url, "list", queue, "--block", "0.3")
    assert code == 0
    producer = Ledger(r, run_id).register_producer()  # the drain's cached counter is now one behind
    encoder = JobEncoder(run_id, producer.producer_id, 5)
    for _ in range(3):
        seq = producer.next_seq()
        r.lpush(queue, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()
    code, final, stderr = drain(redis_url, "list", queue)
    assert code == 0, stderr
    assert (final["completed"], final["invalid"]) == (3, 0)


@pytest.mark.parametrize("protocol", ["list", "reliable"])
def test_a_write_validation_did_not_foresee_fails_only_its_own_jobs(protocol, r, redis_url, queue, run_id, tmp_path):
    """Producer 2's completion bitmap is not a string: its BITFIELD fails; the batch falls back to one job at a time."""
    from queuestorm.ledger import Ledger

    p2_bodies = []

    def second_producer(encoder):
        producer = Ledger(r, run_id).register_producer()
        p2 = JobEncoder(run_id, producer.producer_id, 5)
        r.rpush(f"queuestorm:{{{run_id}}}:p:{producer.producer_id}:done", "not a bitmap")
        p2_bodies.extend(p2.encode(producer.next_seq()) for _ in range(2))
        return p2_bodies

    enqueue_around(r, protocol, queue, run_id, second_producer)
    code, final, stderr = drain(redis_url, protocol, queue)
    assert code == 1
    assert (final["completed"], final["invalid"]) == (49, 2)
    assert "WRONGTYPE" in stderr and "record failed" in stderr
    assert sorted(r.lrange(f"queuestorm:invalid:{queue}", 0, -1)) == sorted(p2_bodies)
    assert_nothing_left(r, protocol, queue)
    assert r.bitcount(f"queuestorm:{{{run_id}}}:p:1:done") == 49


def test_an_rq_job_that_cannot_be_recorded_keeps_its_hash_as_before_the_fetch(r, redis_url, queue, run_id, tmp_path):
    pytest.importorskip("rq")
    enqueue_around(r, "rq", queue, run_id, lambda encoder: [encoder.encode(POISON_SEQ)])
    poison_id = r.lindex(f"rq:queue:{queue}", 24)
    before = r.hgetall(b"rq:job:" + poison_id)
    code, final, _ = drain(redis_url, "rq", queue)
    assert code == 1 and (final["completed"], final["invalid"]) == (49, 1)
    assert r.hgetall(b"rq:job:" + poison_id) == before and before[b"status"] == b"queued"
    assert r.lrange(f"queuestorm:invalid:{queue}", 0, -1) == [poison_id] and r.zcard(f"rq:wip:{queue}") == 0
    check_code, doc = check_report(redis_url, run_id, tmp_path)
    assert check_code == 1 and (doc["completed"], doc["lost"], doc["invalid"]) == (49, 0, 1)
