"""EnqueueUser's enqueue: a timed request per job, its outcome in the ledger, on the direct path or the protocol's own."""

import uuid
from types import SimpleNamespace

import pytest
import redis
from helpers import free_port
from locust.env import Environment

from queuestorm.check import check_run
from queuestorm.connection import connect
from queuestorm.jobs import JobEncoder, decode
from queuestorm.ledger import Ledger
from queuestorm.pacer import Pacer
from queuestorm.protocols import ListProtocol
from queuestorm.users import EnqueueUser
from queuestorm.wire import DirectConnection


class TwoCommandProtocol(ListProtocol):
    """Like Sidekiq: announce the queue, then push, in one MULTI/EXEC."""

    name = "two-command"

    def enqueue_command(self, body):
        return None

    def enqueue(self, client, body):
        pipe = client.pipeline(transaction=True)
        pipe.sadd(f"{self.queue}:queues", self.queue)
        pipe.lpush(self.queue, body)
        pipe.execute()


def make_user(redis_url, r, run_id, protocol):
    env = Environment(user_classes=[EnqueueUser])
    events = []
    env.events.request.add_listener(lambda **kw: events.append(kw))
    user = EnqueueUser(env)
    recorder = Ledger(r, run_id).register_producer()
    user.qs = SimpleNamespace(protocol=protocol, pacer=Pacer(0), recorder=recorder,
                              encoder=JobEncoder(run_id, recorder.producer_id, 10))
    name = f"user-{uuid.uuid4().hex[:8]}"
    user.client = DirectConnection(connect(redis_url, name=name))
    return user, events, recorder, name


def test_each_enqueue_is_a_timed_request_and_a_ledger_record_on_the_direct_path(redis_url, r, queue, run_id):
    user, events, recorder, name = make_user(redis_url, r, run_id, ListProtocol(queue))
    user.enqueue()
    [client_id] = [c["id"] for c in r.client_list() if c["name"] == name]
    r.client_kill_filter(_id=client_id)
    user.enqueue()  # the connection is gone: a failed request, maybe enqueued
    user.enqueue()  # reconnected
    recorder.close()
    assert [(e["request_type"], e["name"], type(getattr(e["exception"], "error", None)).__name__) for e in events] == [
        ("list", "enqueue", "NoneType"), ("list", "enqueue", "ConnectionError"), ("list", "enqueue", "NoneType")]
    assert sorted(decode(body).seq for body in r.lrange(queue, 0, -1)) == [0, 2]
    keys = recorder.keys
    assert [r.getbit(keys.enqueued(recorder.producer_id), s) for s in range(3)] == [1, 0, 1]
    assert [r.getbit(keys.maybe_enqueued(recorder.producer_id), s) for s in range(3)] == [0, 1, 0]


def test_a_protocol_that_needs_several_commands_enqueues_through_its_own_method(redis_url, r, queue, run_id):
    user, events, recorder, _ = make_user(redis_url, r, run_id, TwoCommandProtocol(queue))
    user.enqueue()
    r.set(queue + ":queues", "not a set")
    user.enqueue()
    recorder.close()
    assert [type(getattr(e["exception"], "error", None)) for e in events] == [type(None), redis.ResponseError]
    assert r.llen(queue) == 2  # EXEC does not roll back the LPUSH: "maybe enqueued" is the truth
    assert [r.getbit(recorder.keys.maybe_enqueued(recorder.producer_id), s) for s in range(2)] == [0, 1]


@pytest.mark.parametrize("protocol", [ListProtocol, TwoCommandProtocol])
def test_a_connection_refused_before_anything_was_sent_is_not_enqueued_rather_than_maybe(redis_url, r, queue, run_id,
                                                                                        protocol):
    user, events, recorder, _ = make_user(redis_url, r, run_id, protocol(queue))
    user.enqueue()
    user.client.conn.disconnect()
    user.client.conn.port = free_port()  # the server is gone: nothing listens there
    user.enqueue()
    recorder.close()
    assert type(events[1]["exception"].error) is redis.ConnectionError and not user.client.sent
    keys, pid = recorder.keys, recorder.producer_id
    assert [r.getbit(keys.enqueued(pid), 1), r.getbit(keys.maybe_enqueued(pid), 1)] == [0, 0]
    Ledger(r, run_id).create_run({"protocol": "list"})
    verdict = check_run(r, run_id)
    assert (verdict.enqueued, verdict.maybe_enqueued, verdict.not_sent, verdict.lost) == (1, 0, 1, 1)
