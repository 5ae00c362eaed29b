"""Failures classified by kind, as seed 000 saw them: EOF, connection reset, max clients, timeout, refused, ...

Locust's failures table groups by the exception's text, so a classified failure reads `EOF: Connection closed by
server.` whatever the address or the client library's wording."""

import redis

from ..redis.connection import NETWORK_ERRORS

KINDS = (  # (kind, words in the message), first match wins
    ("max clients", ("max number of clients",)),
    ("EOF", ("closed by server", "eof", "connection closed")),
    ("connection reset", ("reset by peer", "connection reset", "broken pipe")),
    ("connection refused", ("refused",)),
    ("loading", ("loading",)),
    ("busy", ("busy",)),
    ("read-only replica", ("readonly", "read only")),
    ("out of memory", ("oom",)),
    ("auth", ("noauth", "wrongpass", "invalid password")),
)


class RedisFailure(Exception):
    """What the Locust statistics record for a failed Redis call: `KIND: message`."""

    def __init__(self, kind: str, error: BaseException):
        super().__init__(f"{kind}: {str(error) or type(error).__name__}")
        self.kind = kind
        self.error = error  # the exception as raised

    def __repr__(self) -> str:  # Locust keys its failures table on repr()
        return str(self)


def classify(error: BaseException) -> str:
    text = str(error).lower()
    if isinstance(error, (redis.TimeoutError, TimeoutError)) or "timed out" in text or "timeout" in text:
        return "timeout"
    for kind, words in KINDS:
        if any(word in text for word in words):
            return kind
    if isinstance(error, NETWORK_ERRORS):
        return "connection error"
    if isinstance(error, redis.ResponseError):
        return "error reply"
    return type(error).__name__


def classified(error: BaseException | None) -> RedisFailure | None:
    if error is None or isinstance(error, RedisFailure):
        return error
    return RedisFailure(classify(error), error)
