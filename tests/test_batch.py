"""--batch N: N jobs in one round trip, one `enqueue_batch` request, each job recorded as a single enqueue would be,
on the direct path and in every protocol's bulk shape; a batch cut mid-flight counted per job."""

import json
import uuid
from types import SimpleNamespace

import gevent
import gevent.event
import pytest
import redis
from locust.env import Environment

from queuestorm.check import check_run
from queuestorm.connection import connect
from queuestorm.jobs import JobEncoder, decode
from queuestorm.ledger import Ledger
from queuestorm.pacer import Pacer
from queuestorm.produce.batch import recorded_batch
from queuestorm.protocols import PROTOCOLS, ListProtocol, make_protocol
from queuestorm.users import EnqueueUser
from queuestorm.wire import DirectConnection

from helpers import check_report, drain_until_empty, locust, start_run


def batch_user(redis_url, r, run_id, protocol, batch):
    env = Environment(user_classes=[EnqueueUser])
    events = []
    env.events.request.add_listener(lambda **kw: events.append(kw))
    user = EnqueueUser(env)
    ledger = Ledger(r, run_id)
    ledger.create_run({"protocol": protocol.name, "queue": protocol.queue})
    recorder = ledger.register_producer()
    user.qs = SimpleNamespace(protocol=protocol, pacer=Pacer(0), recorder=recorder,
                              encoder=JobEncoder(run_id, recorder.producer_id, 10))
    user.batch = batch
    name = f"user-{uuid.uuid4().hex[:8]}"
    user.client = DirectConnection(connect(redis_url, name=name))
    return user, events, recorder, name


def bits(r, recorder, n):
    keys, pid = recorder.keys, recorder.producer_id
    return ([r.getbit(keys.enqueued(pid), s) for s in range(n)], [r.getbit(keys.maybe_enqueued(pid), s) for s in range(n)])


def test_a_batch_is_one_request_and_each_of_its_jobs_a_ledger_record(redis_url, r, queue, run_id):
    user, events, recorder, _ = batch_user(redis_url, r, run_id, ListProtocol(queue), 20)
    user.enqueue_jobs()
    recorder.close()
    [event] = events
    assert (event["request_type"], event["name"], event["exception"]) == ("list", "enqueue_batch", None)
    assert event["response_length"] == sum(len(body) for body in r.lrange(queue, 0, -1))
    assert sorted(decode(body).seq for body in r.lrange(queue, 0, -1)) == list(range(20))
    assert bits(r, recorder, 20) == ([1] * 20, [0] * 20)


def test_a_batch_whose_connection_was_killed_is_maybe_enqueued_job_by_job_none_lost(redis_url, r, queue, run_id):
    user, events, recorder, name = batch_user(redis_url, r, run_id, ListProtocol(queue), 20)
    user.enqueue_jobs()
    [client_id] = [c["id"] for c in r.client_list() if c["name"] == name]
    r.client_kill_filter(_id=client_id)
    user.enqueue_jobs()  # written into a connection the server closed: the batch raises, its jobs maybe enqueued
    user.enqueue_jobs()  # reconnected
    recorder.close()
    assert [type(getattr(e["exception"], "error", None)).__name__ for e in events] == [
        "NoneType", "ConnectionError", "NoneType"]
    assert bits(r, recorder, 60) == ([1] * 20 + [0] * 20 + [1] * 20, [0] * 20 + [1] * 20 + [0] * 20)
    assert drain_until_empty(redis_url, "list", queue)["completed"] == 40
    verdict = check_run(r, run_id)
    assert (verdict.enqueued, verdict.maybe_enqueued, verdict.completed, verdict.lost, verdict.unexpected) == (
        40, 20, 40, 0, 0)


def test_a_greenlet_killed_mid_batch_records_each_job_maybe_enqueued():
    recorded = []
    recorder = SimpleNamespace(next_seq=iter(range(100)).__next__, enqueued=lambda s: recorded.append(("ok", s)),
                               maybe_enqueued=lambda s: recorded.append(("maybe", s)),
                               not_sent=lambda s: recorded.append(("not sent", s)))
    qs = SimpleNamespace(recorder=recorder, encoder=SimpleNamespace(encode=lambda s: b"%d" % s),
                         protocol=SimpleNamespace(name="list"))
    hook = SimpleNamespace(fire=lambda **kw: None)
    sent, never = gevent.event.Event(), gevent.event.Event()

    def send(bodies, request):
        sent.set()
        never.wait()  # a reply that does not come

    batch = gevent.spawn(recorded_batch, qs, hook, send, 5, lambda: True)
    sent.wait(10)
    batch.kill()
    assert recorded == [("maybe", s) for s in range(5)]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))  # every registered protocol's bulk shape
def test_every_protocols_batch_enqueues_each_job_once(protocol, r, redis_url, queue, run_id, tmp_path):
    producer, encoder = start_run(r, run_id, protocol, queue)
    seqs = [producer.next_seq() for _ in range(50)]
    outcomes = make_protocol(protocol, queue).enqueue_batch(r, [encoder.encode(seq) for seq in seqs])
    assert outcomes == [None] * 50
    for seq in seqs:
        producer.enqueued(seq)
    producer.close()
    assert drain_until_empty(redis_url, protocol, queue)["completed"] == 50
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (50, 0, 0)


def test_a_run_with_batch_20_drains_every_job_and_times_enqueue_batch(tmp_path, redis_url, queue, run_id):
    report = tmp_path / "verdict.json"
    result = locust("--users", "4", "--spawn-rate", "4", "--run-time", "3s", "--queue", queue, "--batch", "20",
                    "--report", str(report), env={"REDIS_URL": redis_url, "QS_RUN_ID": run_id})
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert doc["verdict"] == "pass" and doc["enqueued"] >= 20 and doc["enqueued"] % 20 == 0, doc
    assert doc["completed"] == doc["enqueued"] and doc["lost"] == 0 and doc["maybe_enqueued"] == 0
    assert any(line.split()[:2] == ["list", "enqueue_batch"] for line in result.stderr.splitlines())  # Locust's stats


@pytest.mark.parametrize("value", ["0", "inf", "10001"])
def test_batch_out_of_bounds_is_one_line_exit_2(value):
    result = locust("--users", "1", "--run-time", "1s", "--batch", value, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert [line for line in result.stderr.strip().splitlines() if "--batch" in line] != []
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_call_many_reads_every_reply_in_place_errors_included_across_many_reads(redis_url, r, queue):
    client = DirectConnection(connect(redis_url, read_buffer=1024))
    replies = client.call_many([("LPUSH", queue, "a"), ("INCR", queue), ("LPUSH", queue, "b")])
    assert replies[0] == 1 and isinstance(replies[1], redis.ResponseError) and replies[2] == 2
    many = client.call_many([("LPUSH", queue, b"x" * 10)] * 5000)  # 5000 replies: far more than one read's buffer
    assert many == list(range(3, 5003)) and client.call("LLEN", queue) == 5002


def test_a_batch_refused_by_the_server_fails_its_request_and_leaves_each_job_maybe(redis_url, r, queue, run_id):
    r.set(queue, "not a list")
    user, events, recorder, _ = batch_user(redis_url, r, run_id, ListProtocol(queue), 5)
    user.enqueue_jobs()
    recorder.close()
    [event] = events
    assert event["name"] == "enqueue_batch" and "WRONGTYPE" in str(event["exception"])
    assert bits(r, recorder, 5) == ([0] * 5, [1] * 5)


def test_a_run_of_bits_is_set_as_one_set_each_would():
    from queuestorm.ledger.writer import BitmapBuffer

    for offset in range(18):
        for count in range(0, 21):
            one_by_one, at_once = BitmapBuffer(), BitmapBuffer()
            one_by_one.set(100)
            at_once.set(100)
            for i in range(offset, offset + count):
                one_by_one.set(i)
            at_once.set_range(offset, count)
            assert at_once.bits == one_by_one.bits and at_once.take_dirty() == one_by_one.take_dirty()


def test_a_batch_takes_a_pacer_slot_per_job():
    pacer = Pacer(1000)
    first = pacer._next
    pacer.wait(100)  # its slot is now: no wait
    assert pacer._next == pytest.approx(first + 100 / 1000)


def test_batch_comes_from_a_scenario_and_the_start_form(tmp_path):
    import argparse

    from locust.argument_parser import get_parser

    from queuestorm.options import RunConfig, apply_start_form
    from queuestorm.scenario import apply_scenario

    scenario = tmp_path / "batched.yaml"
    scenario.write_text("options: {batch: 50}\n")
    parser = get_parser()
    apply_scenario(parser, str(scenario))
    assert parser.parse_args(["-f", "x.py"]).batch == 50
    config = RunConfig()
    assert apply_start_form(config, argparse.Namespace(batch="200")) == ["batch"] and config.batch == 200
