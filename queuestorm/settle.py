"""Waiting, after the load stops, until the drain has caught up: queue empty, producers closed, completions still."""

import time
from dataclasses import dataclass

import redis

from .ledger import Ledger
from .protocols import Protocol

POLL_SECONDS = 0.5


@dataclass
class Settled:
    settled: bool
    depth: int
    unclosed_producers: list[int]
    waited_s: float


def wait_for_drain(target: redis.Redis, protocol: Protocol, ledger: Ledger, grace: float,
                   expect_drain: bool = True, sleep=time.sleep, ignore_producers: set[int] = frozenset()) -> Settled:
    """`ignore_producers`: producers known to be dead (a lost Locust worker), which will never close."""
    started = time.monotonic()
    last_completions = None
    depth, unclosed = -1, []
    while True:
        try:
            depth = protocol.depth(target)
            unclosed = [p for p in ledger.unclosed_producers() if p not in ignore_producers]
            completions = ledger.completions()
        except (redis.ConnectionError, redis.TimeoutError):
            completions = None
        still = completions is not None and completions == last_completions
        waited = time.monotonic() - started
        if not unclosed and still and (depth == 0 or not expect_drain):
            return Settled(True, depth, unclosed, round(waited, 2))
        if waited >= grace:
            return Settled(False, depth, unclosed, round(waited, 2))
        last_completions = completions
        sleep(POLL_SECONDS)
