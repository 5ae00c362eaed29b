"""The run over time, sampled once a second on the standalone or master process, for the web UI, the HTML report and
--plot.

A point costs three round trips to Redis: the queue's depth, the e2e histogram with the producer count, and per
producer a BITCOUNT of its completed bitmap and an HLEN of its duplicates (counted on the server: nothing large comes
back). Points are kept in a bounded deque; the figures are documented in docs/webui.md.
"""

import logging
import time
from collections import deque

import gevent
import redis

from ..ledger.reader import LedgerReader
from ..ledger.latency import percentiles
from ..model.periodic import every

log = logging.getLogger("queuestorm")

SAMPLE_SECONDS = 1.0
MAX_POINTS = 3600  # an hour at one point a second; older points are dropped first
COUNT_KEYS = ("requests", "failures", "enqueued", "maybe_enqueued", "dropped")


def sum_counts(rows: list[dict]) -> dict:
    return {key: sum(row.get(key) or 0 for row in rows) for key in COUNT_KEYS}


class Timeline:
    """`counts()` returns this run's producer counts summed over every process (see sum_counts)."""

    def __init__(self, target: redis.Redis, ledger_client: redis.Redis, run_id: str, protocol, counts,
                 faults=lambda: [], processes=lambda: [], interval: float = SAMPLE_SECONDS, max_points: int = MAX_POINTS,
                 clock=time.monotonic):
        self.target = target
        self.ledger = LedgerReader(ledger_client, run_id)
        self.run_id = run_id
        self.protocol = protocol
        self.counts = counts
        self.faults = faults
        self.read_processes = processes
        self.interval = interval
        self.clock = clock
        self.points: deque[dict] = deque(maxlen=max_points)
        self.started: float | None = None
        self.started_at: float | None = None  # wall clock, for the charts' axis
        self.verdict: dict | None = None
        self.processes: list[dict] = []
        self._last_histogram: dict[int, int] = {}
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.started, self.started_at = self.clock(), time.time()
        if self._greenlet is None:
            self._greenlet = every(self.interval, self._step)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def _step(self) -> None:
        try:
            self.sample()
            self.processes = self.read_processes()
        except (redis.RedisError, OSError) as e:
            log.debug("timeline point skipped: %s", e)

    def sample(self) -> dict:
        """Take one point now and keep it."""
        if self.started is None:
            self.started, self.started_at = self.clock(), time.time()
        now = self.clock()
        depth = self.protocol.depth(self.target)
        histogram = self.ledger.e2e_histogram()
        distinct, duplicated = self.ledger.completed_and_duplicated()
        window = {b: n - self._last_histogram.get(b, 0) for b, n in histogram.items()
                  if n > self._last_histogram.get(b, 0)}
        self._last_histogram = histogram
        counts = self.counts()
        point = {
            "t": round(now - self.started, 2),
            "depth": depth,
            "enqueued": counts["enqueued"],
            "maybe_enqueued": counts["maybe_enqueued"],
            "failures": counts["failures"],
            "dropped": counts["dropped"],
            "completed": distinct,
            "duplicated": duplicated,
            # neither queued nor completed yet: in a drain's hands, or lost (the check at the end tells which)
            "unaccounted": max(0, counts["enqueued"] - distinct - depth),
            "e2e_ms": percentiles(window),
            "faults": len(self.faults()),
        }
        previous = self.points[-1] if self.points else {"t": 0.0, "enqueued": 0, "completed": 0}
        elapsed = point["t"] - previous["t"]
        point["enqueue_rate"] = round((point["enqueued"] - previous["enqueued"]) / elapsed, 1) if elapsed > 0 else 0.0
        point["drain_rate"] = round((point["completed"] - previous["completed"]) / elapsed, 1) if elapsed > 0 else 0.0
        self.points.append(point)
        return point

    def finish(self, verdict: dict, processes: list[dict]) -> None:
        """The run is over: one last point, the verdict and the processes' final vitals."""
        self.stop()
        try:
            self.sample()
        except (redis.RedisError, OSError) as e:
            log.debug("last timeline point skipped: %s", e)
        self.processes = processes
        self.verdict = verdict
        if self.points and verdict.get("lost") is not None:
            self.points[-1]["lost"] = verdict["lost"]  # known only now: the chart shows it as a dot at the end

    def snapshot(self, state: str = "", processes: list[dict] | None = None) -> dict:
        """What /queuestorm/stats serves."""
        return {
            "run_id": self.run_id,
            "protocol": self.protocol.name,
            "state": state,
            "started_at": self.started_at,
            "interval_s": self.interval,
            "latest": self.points[-1] if self.points else None,
            "points": list(self.points),
            "faults": list(self.faults()),
            "processes": processes if processes is not None else self.processes,
            "verdict": self.verdict,
        }


def verdict_summary(doc: dict) -> dict:
    """The part of the verdict JSON the web UI shows."""
    keys = ("verdict", "reasons", "enqueued", "maybe_enqueued", "completed", "lost", "duplicated", "unexpected",
            "recovered", "unfinished", "invalid", "lost_ids", "duplicated_ids", "e2e_ms", "achieved_rate")
    return {k: doc.get(k) for k in keys}
