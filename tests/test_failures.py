"""Failures by kind, as Locust's failures table shows them (seed 000's EOF / reset / max clients)."""

import socket

import pytest
import redis

from queuestorm.failures import classified


@pytest.mark.parametrize("error, shown", [
    (redis.ConnectionError("Connection closed by server."), "EOF: Connection closed by server."),
    (redis.ConnectionError("Error 104 while writing to socket. Connection reset by peer."),
     "connection reset: Error 104 while writing to socket. Connection reset by peer."),
    (redis.ConnectionError("max number of clients reached"), "max clients: max number of clients reached"),
    (redis.TimeoutError("Timeout reading from socket"), "timeout: Timeout reading from socket"),
    (socket.timeout(), "timeout: TimeoutError"),
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
     "connection refused: Error 111 connecting to 127.0.0.1:1. Connection refused."),
    (redis.BusyLoadingError("Redis is loading the dataset in memory"), "loading: Redis is loading the dataset in memory"),
    (redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
     "out of memory: OOM command not allowed when used memory > 'maxmemory'."),
    (redis.ReadOnlyError("You can't write against a read only replica."),
     "read-only replica: You can't write against a read only replica."),
    (redis.ResponseError("WRONGTYPE Operation against a key"), "error reply: WRONGTYPE Operation against a key"),
])
def test_each_failure_reads_as_its_kind(error, shown):
    failure = classified(error)
    assert str(failure) == repr(failure) == shown and failure.error is error
    assert classified(failure) is failure and classified(None) is None
