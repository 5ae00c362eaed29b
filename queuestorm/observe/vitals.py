"""Vitals of one process, sampled once a second: memory (RSS), CPU, gevent event-loop lag and Redis ping.

Lag is how late a gevent.sleep(LAG_PROBE) wakes: a loop starved by CPU-bound work or a blocking call shows here
before it shows as slow requests. The summary keeps the first and last RSS, so memory growth over a run (seed 004's
client leak) is one subtraction.
"""

import os
import resource
import socket
import time

import gevent
import redis

from ..model.errors import UsageError
from ..model.periodic import every
from ..redis.connection import connect

SAMPLE_SECONDS = 1.0
LAG_PROBE = 0.1
MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak, not current: the best without /proc
        return peak if os.uname().sysname == "Darwin" else peak * 1024


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class _Series:
    __slots__ = ("count", "total", "max", "first", "last")

    def __init__(self):
        self.count, self.total, self.max = 0, 0.0, 0.0
        self.first = self.last = None

    def add(self, value: float) -> None:
        if self.first is None:
            self.first = value
        self.last = value
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def _round(value, digits=1):
    return None if value is None else round(value, digits)


class VitalsSampler:
    """Two greenlets: one probes the loop lag continuously, one takes a sample every SAMPLE_SECONDS."""

    def __init__(self, role: str, ping_url: str = "", name: str = ""):
        self.role = role
        self.name = name or role
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.rss = _Series()
        self.cpu = _Series()
        self.lag = _Series()
        self.ping = _Series()
        self.ping_errors = 0
        self._ping_url = ping_url
        self._ping_client: redis.Redis | None = None
        self._owns_client = True
        self._window_lag = 0.0
        self._greenlets: list[gevent.Greenlet] = []
        self._last_wall, self._last_cpu = time.monotonic(), cpu_seconds()

    def share_client(self, client: redis.Redis) -> None:
        """Ping through a client the process already has (redis-py serialises a single-connection client's
        commands), rather than opening one more connection to a server that may be short of them."""
        self._ping_client, self._owns_client = client, False

    def start(self) -> "VitalsSampler":
        if not self._greenlets:
            self._last_wall, self._last_cpu = time.monotonic(), cpu_seconds()
            self._last_probe = self._last_wall
            self._greenlets = [every(LAG_PROBE, self._note_lag), every(SAMPLE_SECONDS, self.sample)]
        return self

    def stop(self) -> None:
        """Stops sampling, after a last sample (so a process shorter than a second still reports its vitals)."""
        if self._greenlets:
            gevent.killall(self._greenlets)
            self._greenlets = []
            self.sample()
        if self._ping_client is not None and self._owns_client:
            self._ping_client.close()
            self._ping_client = None

    def _note_lag(self) -> None:
        """How much later than LAG_PROBE this wake-up came: the time the event loop was busy elsewhere."""
        now = time.monotonic()
        self._window_lag = max(self._window_lag, now - self._last_probe - LAG_PROBE)
        self._last_probe = now

    def sample(self) -> None:
        now, cpu = time.monotonic(), cpu_seconds()
        elapsed = now - self._last_wall
        self._last_wall, self._last_cpu, cpu_used = now, cpu, cpu - self._last_cpu
        self.rss.add(rss_bytes() / MB)
        self.cpu.add(cpu_used / elapsed * 100 if elapsed > 0 else 0.0)
        self.lag.add(self._window_lag * 1000)
        self._window_lag = 0.0
        ping_ms = self._ping_once()
        if ping_ms is not None:
            self.ping.add(ping_ms)

    def _ping_once(self) -> float | None:
        if not self._ping_url and self._ping_client is None:
            return None

        try:
            if self._ping_client is None:
                self._ping_client = connect(self._ping_url, check=False)
            started = time.perf_counter()
            self._ping_client.ping()
            return (time.perf_counter() - started) * 1000
        except (redis.RedisError, OSError, UsageError):
            self.ping_errors += 1
            return None

    def summary(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "host": self.host,
            "pid": self.pid,
            "samples": self.rss.count,
            "rss_mb_mean": _round(self.rss.mean),
            "rss_mb_max": _round(self.rss.max),
            "rss_mb_first": _round(self.rss.first),
            "rss_mb_last": _round(self.rss.last),
            "rss_growth_mb": _round(self.rss.last - self.rss.first) if self.rss.count else None,
            "cpu_pct_mean": _round(self.cpu.mean),
            "cpu_pct_max": _round(self.cpu.max),
            "cpu_pct_last": _round(self.cpu.last),
            "lag_ms_mean": _round(self.lag.mean, 2),
            "lag_ms_max": _round(self.lag.max, 2),
            "ping_ms_mean": _round(self.ping.mean, 2),
            "ping_ms_max": _round(self.ping.max, 2),
            "ping_errors": self.ping_errors,
        }
