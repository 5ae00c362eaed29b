"""After the load stops: wait until every job is accounted for — producers closed, nothing queued, nothing held by a
drain, completions no longer moving — or until --grace runs out. Never settled on one idle poll."""

import logging
import time
from dataclasses import dataclass, field

import redis

from ..ledger import drain_reports
from ..ledger.writer import Ledger
from ..protocols import Protocol
from ..redis.connection import NETWORK_ERRORS

log = logging.getLogger("queuestorm")

POLL_SECONDS = 0.5
QUIET_SECONDS = 1.0  # completions must stand still this long: longer than a drain's report cadence
PROGRESS_SECONDS = 2.0


@dataclass
class Settled:
    settled: bool
    depth: int
    unclosed_producers: list[int]
    waited_s: float
    held: int = 0
    interrupted: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Poll:
    depth: int = -1
    held: int = 0
    unclosed: list[int] = field(default_factory=list)
    completions: int | None = None


def held_by_drains(ledger: Ledger) -> int:
    """Jobs of this run live drain processes hold right now (fetched, not yet acknowledged)."""
    return sum(report.get("held") or 0 for report in drain_reports.read(ledger.client, ledger.run_id)
               if not report.get("final") and drain_reports.is_fresh(report))


def wait_for_drain(target: redis.Redis, protocol: Protocol, ledger: Ledger, grace: float, *,
                   expect_drain: bool = True, ignore_producers: set[int] = frozenset(), sleep=time.sleep,
                   clock=time.monotonic, progress=None, cancelled=lambda: False) -> Settled:
    """`ignore_producers`: producers known to be dead (a lost Locust worker), which will never close. `progress(line)`
    gets one line every PROGRESS_SECONDS while it waits."""
    started = clock()
    poll, quiet_since, last_completions, last_progress = _Poll(), None, None, started
    rate_from: tuple[float, int] | None = None  # (when, completions) at the last progress line
    while True:
        now = clock()
        try:
            poll = _Poll(protocol.depth(target), held_by_drains(ledger) if expect_drain else 0,
                         [p for p in ledger.unclosed_producers() if p not in ignore_producers], ledger.completions())
        except NETWORK_ERRORS as e:
            log.warning("settle: Redis did not answer (%s); trying again", e)
            poll.completions = None
        if poll.completions is None or poll.completions != last_completions:
            quiet_since = now
        last_completions = poll.completions
        quiet = poll.completions is not None and now - quiet_since >= QUIET_SECONDS
        waited = now - started
        done = not poll.unclosed and quiet and (not expect_drain or (poll.depth == 0 and poll.held == 0))
        if done or waited >= grace or cancelled():
            return Settled(done, poll.depth, poll.unclosed, round(waited, 2), poll.held, interrupted=cancelled())
        if rate_from is None and poll.completions is not None:
            rate_from = (now, poll.completions)
        if progress is not None and now - last_progress >= PROGRESS_SECONDS and poll.completions is not None:
            rate = (poll.completions - rate_from[1]) / (now - rate_from[0]) if now > rate_from[0] else 0.0
            rate_from = (now, poll.completions)
            progress(f"settling: {poll.depth} queued, {poll.held} in flight, {rate:.0f} completed/s, "
                     f"{len(poll.unclosed)} producer(s) still open, {max(0.0, grace - waited):.0f}s of --grace left")
            last_progress = now
        sleep(POLL_SECONDS)
