"""The load's direct command path must fail exactly as redis-py's execute_command does with retries off."""

import socket
import time
import uuid

import gevent

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from queuestorm.connection import connect
from queuestorm.failures import RedisFailure
from queuestorm.timing import timed
from queuestorm.wire import SO_TIMESTAMPNS, DirectConnection


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
    assert direct.conn._sock.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 1  # the new socket is stamped too


def short_timeout(redis_port, seconds=0.2):
    return DirectConnection(redis.Redis(port=redis_port, socket_timeout=seconds, single_connection_client=True,
                                        retry=Retry(NoBackoff(), 0)))


def test_a_timeout_raises_timeout_error_and_drops_the_connection_so_no_late_reply_is_misread(redis_port, r, queue):
    direct = short_timeout(redis_port)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        direct.call("BLPOP", queue, 2)
    assert 0.2 <= time.monotonic() - started < 1.0
    r.lpush(queue, b"job")  # a BLPOP still waiting on the server would take it, and the next call would read it
    assert direct.call("ECHO", b"mine") == b"mine"
    assert r.lrange(queue, 0, -1) == [b"job"]
    direct.close()


def test_under_gevent_the_timeout_is_the_watchdogs_not_a_timeout_per_wait(redis_port):
    direct = short_timeout(redis_port)
    assert direct.call("ECHO", b"x") == b"x"
    assert direct.conn._sock.gettimeout() is None  # gevent starts no Timeout on the socket's waits
    direct.close()


def test_a_redis_py_command_run_on_the_connection_is_under_the_same_timeout(redis_port, queue):
    direct = short_timeout(redis_port)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        direct.run(lambda client: client.blpop(queue, 2))  # with no socket timeout left, it would wait 2 s
    assert time.monotonic() - started < 1.0
    assert direct.run(lambda client: client.echo("back")) == b"back"
    direct.close()


def test_a_slow_call_within_the_timeout_completes_and_no_timeout_arrives_after_it(redis_port, queue):
    direct = short_timeout(redis_port, seconds=0.6)
    assert direct.call("BLPOP", queue, 0.3) is None
    gevent.sleep(0.8)  # a late throw from the watchdog would land here
    assert direct.call("ECHO", b"fine") == b"fine"
    direct.close()


def test_only_the_call_that_hangs_times_out(redis_port, queue):
    # busy's own timeout is long: a loaded machine may stall one ECHO past 0.2 s, but a watchdog that threw into
    # every call in flight when one times out would still raise there
    stuck, busy = short_timeout(redis_port), short_timeout(redis_port, seconds=5)

    def echo_for(seconds):
        deadline, count = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            assert busy.call("ECHO", b"ok") == b"ok"
            count += 1
        return count

    echoing = gevent.spawn(echo_for, 0.6)
    with pytest.raises(redis.TimeoutError):
        stuck.call("BLPOP", queue, 2)
    assert echoing.get(timeout=5) > 10  # raised nothing while the other timed out
    stuck.close()
    busy.close()


def stamped_call(direct, *args):
    """The system switches kernel time-stamping on a moment after the first socket asks: retry until it has."""
    for _ in range(50):
        reply = direct.call(*args)
        if direct.round_trip is not None:
            return reply
        gevent.sleep(0.02)
    raise AssertionError("no reply carried a kernel timestamp")


def test_the_round_trip_is_taken_from_the_kernels_stamp_so_a_busy_event_loop_does_not_count(direct):
    stamped_call(direct, "ECHO", b"warm")

    def hog_the_loop():
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:  # never yields: the reply waits, read, for the loop
            pass

    gevent.spawn(hog_the_loop)
    started = time.perf_counter()
    assert direct.call("ECHO", b"x" * 1000) == b"x" * 1000
    stopwatch = time.perf_counter() - started
    assert stopwatch >= 0.2
    assert direct.round_trip is not None and 0 < direct.round_trip < 0.05


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


def test_timed_records_the_round_trip_when_given_and_the_stopwatch_in_the_context():
    hook = Recorded()
    with timed(hook, "list", "enqueue") as request:
        time.sleep(0.01)
        request.round_trip = 0.002
    with timed(hook, "list", "enqueue") as request:
        request.round_trip = 5.0  # longer than the stopwatch: not a round trip of this call
    with timed(hook, "list", "enqueue") as request:
        request.round_trip = 0.002
        raise redis.ConnectionError("reset")
    stamped, impossible, failed = hook.events
    assert stamped["response_time"] == pytest.approx(2.0) and stamped["context"]["stopwatch"] >= 10
    assert impossible["response_time"] < 1000 and impossible["context"] == {}
    assert failed["response_time"] != pytest.approx(2.0) and failed["context"] == {}


def test_timed_lets_a_greenlet_kill_through():
    with pytest.raises(gevent.GreenletExit):
        with timed(Recorded(), "list", "enqueue"):
            raise gevent.GreenletExit()


def test_a_small_read_buffer_still_reads_a_reply_larger_than_itself(redis_url):
    direct = DirectConnection(connect(redis_url, read_buffer=64))
    assert direct.call("ECHO", b"y" * 10_000) == b"y" * 10_000
    direct.close()
