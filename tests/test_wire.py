"""The load's direct command path must fail exactly as redis-py's execute_command does with retries off."""

import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from queuestorm.connection import connect
from queuestorm.failures import RedisFailure
from queuestorm.timing import timed
from queuestorm.wire import DirectConnection


@pytest.fixture
def direct(redis_url):
    name = f"wire-{uuid.uuid4().hex[:8]}"
    conn = DirectConnection(connect(redis_url, name=name))
    conn.name = name
    yield conn
    conn.close()


class ShortWrites:
    """A socket whose send() takes at most 1,000 bytes a call, as a full kernel buffer does."""

    def __init__(self, sock):
        self.sock, self.sends = sock, 0

    def send(self, data):
        self.sends += 1
        return self.sock.send(data[:1000])

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_a_command_returns_the_servers_reply(direct, r, queue):
    assert direct.call("LPUSH", queue, b"job") == 1
    direct.conn._sock = short = ShortWrites(direct.conn._sock)
    assert direct.call("LPUSH", queue, b"x" * 300_000) == 2  # written in 301 partial sends
    assert short.sends > 300
    assert r.lrange(queue, 0, -1) == [b"x" * 300_000, b"job"]


def test_a_server_error_raises_response_error_and_keeps_the_connection(direct, r, queue):
    r.set(queue, "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        direct.call("LPUSH", queue, b"job")
    assert direct.call("ECHO", b"still here") == b"still here"


def test_a_connection_killed_by_the_server_raises_connection_error_then_reconnects(direct, r):
    assert direct.call("ECHO", b"before") == b"before"
    [client_id] = [c["id"] for c in r.client_list() if c["name"] == direct.name]
    assert r.client_kill_filter(_id=client_id) == 1
    with pytest.raises(redis.ConnectionError):
        direct.call("ECHO", b"lost")
    assert direct.call("ECHO", b"after") == b"after"


def test_a_timeout_raises_timeout_error_and_drops_the_connection_so_no_late_reply_is_misread(redis_port, r, queue):
    client = redis.Redis(port=redis_port, socket_timeout=0.2, single_connection_client=True, retry=Retry(NoBackoff(), 0))
    direct = DirectConnection(client)
    with pytest.raises(redis.TimeoutError):
        direct.call("BLPOP", queue, 2)
    r.lpush(queue, b"job")  # a BLPOP still waiting on the server would take it, and the next call would read it
    assert direct.call("ECHO", b"mine") == b"mine"
    assert r.lrange(queue, 0, -1) == [b"job"]
    direct.close()


class Recorded:
    def __init__(self):
        self.events = []

    def fire(self, **kwargs):
        self.events.append(kwargs)


def test_timed_fires_one_event_per_call_and_records_an_exception_as_the_failure():
    hook = Recorded()
    with timed(hook, "list", "enqueue", 10) as ok:
        pass
    with timed(hook, "list", "enqueue", 10) as failed:
        raise redis.ConnectionError("reset")
    assert ok.exception is None and isinstance(failed.exception.error, redis.ConnectionError)
    assert str(failed.exception) == "connection error: reset"  # classified, as Locust's failures table shows it
    assert [(e["request_type"], e["name"], e["response_length"], type(e["exception"])) for e in hook.events] == [
        ("list", "enqueue", 10, type(None)), ("list", "enqueue", 10, RedisFailure)]
    assert all(e["response_time"] >= 0 and e["start_time"] > 0 for e in hook.events)


def test_timed_lets_a_greenlet_kill_through():
    import gevent

    with pytest.raises(gevent.GreenletExit):
        with timed(Recorded(), "list", "enqueue"):
            raise gevent.GreenletExit()


def test_a_small_read_buffer_still_reads_a_reply_larger_than_itself(redis_url):
    direct = DirectConnection(connect(redis_url, read_buffer=64))
    assert direct.call("ECHO", b"y" * 10_000) == b"y" * 10_000
    direct.close()
