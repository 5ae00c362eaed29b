import socket
import time

import gevent
import pytest
import redis

from queuestorm.connection import BLOCKING_MARGIN, connect, redact, socket_timeout_for
from queuestorm.errors import UsageError
from queuestorm.protocols import make_protocol

from helpers import free_port, start_redis_server


def test_redact_hides_only_the_password():
    assert redact("redis://user:s3cret@host:6380/2") == "redis://user:***@host:6380/2"
    assert redact("rediss://:s3cret@host:6380?ssl_cert_reqs=none") == "rediss://:***@host:6380?ssl_cert_reqs=none"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


def test_bad_scheme_is_a_one_line_error_naming_the_url_without_password():
    with pytest.raises(UsageError) as e:
        connect("http://u:topsecret@example.com")
    assert "topsecret" not in str(e.value) and "***" in str(e.value)


def test_unreachable_redis_names_the_url_redacted():
    port = free_port()
    with pytest.raises(UsageError, match=rf"cannot reach .* redis://:\*\*\*@127.0.0.1:{port}/0") as e:
        connect(f"redis://:pw@127.0.0.1:{port}/0")
    assert "pw@" not in str(e.value)


def test_wrong_password_is_reported_as_refused_credentials():
    proc, port, _ = start_redis_server("--requirepass", "right")
    try:
        with pytest.raises(UsageError, match="refused the credentials"):
            connect(f"redis://:wrong@127.0.0.1:{port}/0")
        with pytest.raises(UsageError, match="refused the credentials"):
            connect(f"redis://127.0.0.1:{port}/0")
        connect(f"redis://:right@127.0.0.1:{port}/0").close()
    finally:
        proc.terminate()
        proc.wait()


def test_self_signed_tls_option_is_accepted_by_the_url_parser():
    pool = redis.ConnectionPool.from_url("rediss://:pw@127.0.0.1:1/0?ssl_cert_reqs=none")
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    with pytest.raises(UsageError, match=r"cannot reach .*rediss://:\*\*\*@127.0.0.1:1/0\?ssl_cert_reqs=none"):
        connect("rediss://:pw@127.0.0.1:1/0?ssl_cert_reqs=none")


def test_blocking_fetch_longer_than_default_timeouts_does_not_time_out(redis_url, queue):
    block = 2.0
    client = connect(redis_url, block_seconds=block)
    assert client.connection.socket_timeout == block + BLOCKING_MARGIN
    started = time.monotonic()
    assert make_protocol("list", queue).fetch(client, block) == []
    assert block - 0.1 <= time.monotonic() - started < block + 1


def test_blocking_fetch_on_a_dead_network_times_out_instead_of_hanging():
    """A server that accepts the connection and then says nothing, as a dropped network does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    gevent.spawn(lambda: held.append(listener.accept()))
    block = 0.5
    client = connect(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", block_seconds=block, check=False,
                     single=False)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        make_protocol("list", "q").fetch(client, block)
    elapsed = time.monotonic() - started
    assert socket_timeout_for(block) - 0.2 <= elapsed < socket_timeout_for(block) + 2
    listener.close()
