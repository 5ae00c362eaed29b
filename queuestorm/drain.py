"""The drain worker: gevent greenlets that fetch jobs, do their work, record completion, then acknowledge."""

import json
import os
import signal
import subprocess
import sys
import time

import gevent
import redis

from . import drain_reports
from .connection import DRAIN_CLIENT, connect, redact, socket_timeout_for
from .errors import UsageError
from .jobs import decode
from .keys import foreign_jobs_key
from .latency import LocalHistogram
from .ledger import CompletionRecorder
from .preflight import ready_for
from .protocols import Delivery, Protocol, make_protocol, require_server_version
from .vitals import VitalsSampler

NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
MAX_BACKOFF = 2.0
RECORD_RETRY_SECONDS = 30.0
IDLE_REPORT_SECONDS = 0.2
REPORT_SECONDS = 1.0
RECENT_RUN_SECONDS = 120.0


class DrainWorker:
    def __init__(
        self,
        redis_url: str,
        protocol: str,
        queue: str,
        *,
        ledger_url: str | None = None,
        concurrency: int = 10,
        batch: int = 50,
        block_seconds: float = 1.0,
        work_ms: float = 0.0,
        visibility_timeout: float = 30.0,
        until_empty: bool = False,
        stats_interval: float = 3.0,
        consumer_id: str | None = None,
        out=None,
    ):
        for name, value in (("concurrency", concurrency), ("batch", batch)):
            if value < 1:
                raise UsageError(f"--{name} must be at least 1, got {value}")
        if visibility_timeout <= 0:
            raise UsageError(f"--visibility-timeout must be above 0, got {visibility_timeout}")
        self.redis_url = redis_url
        self.ledger_url = ledger_url or redis_url
        self.same_server = self.ledger_url == redis_url
        self.consumer_id = consumer_id or f"{os.uname().nodename}-{os.getpid()}"
        self.protocol = make_protocol(protocol, queue, self.consumer_id, visibility_timeout)
        self.queue = queue
        self.concurrency = concurrency
        self.batch = 1 if work_ms else batch  # a worker doing real work holds one job at a time
        self.block_seconds = block_seconds
        self.work_ms = work_ms
        self.until_empty = until_empty
        self.stats_interval = stats_interval
        self.out = out or sys.stdout
        self.stopping = False
        self.completed = 0
        self.duplicates = 0
        self.foreign = 0
        self.recovered = 0
        self.errors = 0
        self.depth: int | None = None
        self.last_error = ""
        self._last_completion = time.monotonic()
        self._histogram = LocalHistogram()
        self._last_stats_at: float | None = None
        self._last_count = 0
        # bodies fetched and not yet acknowledged, for the protocols that sweep their own orphans
        sweeps = type(self.protocol).sweep_orphans is not Protocol.sweep_orphans
        self._held: set[bytes] | None = set() if sweeps else None
        self.completed_by_run: dict[str, int] = {}
        self._run_last_seen: dict[str, float] = {}
        self.vitals = VitalsSampler("drain", name=self.consumer_id)
        self._report_rate = 0.0
        self._report_client: redis.Redis | None = None

    def run(self) -> int:
        self._monitor_client = connect(self.redis_url, role="target Redis")
        require_server_version(self._monitor_client, self.protocol, redact(self.redis_url))
        ready_for(self._monitor_client, self.protocol, self.redis_url, "drain", self.ledger_url)
        connect(self.ledger_url, role="ledger Redis").close()
        self.recovered += self.protocol.start_consumer(self._monitor_client)
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, self.stop)
        self.vitals.share_client(self._monitor_client)
        self.vitals.start()
        consumers = [gevent.spawn(self._consume) for _ in range(self.concurrency)]
        monitor = gevent.spawn(self._monitor)
        reporter = gevent.spawn(self._report_loop)
        gevent.joinall(consumers)
        monitor.kill()
        reporter.kill()
        try:
            self.protocol.stop_consumer(self._monitor_client)
        except NETWORK_ERRORS as e:
            self._error(e)
        self._publish(final=True)
        self.vitals.stop()
        self._print_stats(final=True)
        return 0

    def stop(self, *_):
        self.stopping = True

    def _consume(self) -> None:
        protocol = self.protocol
        target = self._connect(self.redis_url, block_seconds=self.block_seconds, name=DRAIN_CLIENT)
        ledger = target if self.same_server else self._connect(self.ledger_url)
        if target is None or ledger is None:
            return
        recorder = CompletionRecorder(ledger)
        backoff = 0.05
        while not self.stopping:
            started = time.monotonic()
            try:
                deliveries = protocol.fetch(target, self.block_seconds, self.batch)
            except NETWORK_ERRORS as e:
                self._error(e)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.05
            if not deliveries:
                if time.monotonic() - started < self.block_seconds / 2:
                    gevent.sleep(min(0.1, self.block_seconds))  # the server did not block: never busy-spin
                continue
            held = self._held
            if held is not None:
                bodies = [d.body for d in deliveries]
                held.update(bodies)
            try:
                self._handle(target, recorder, deliveries)
            except NETWORK_ERRORS as e:  # retried for RECORD_RETRY_SECONDS: left unacknowledged, for redelivery
                self._error(e)
            finally:
                if held is not None:
                    held.difference_update(bodies)

    def _connect(self, url: str, **options) -> redis.Redis | None:
        """run() checked both URLs: a refusal now (maxclients, a restarting server) is waited out, until stopped."""
        backoff = 0.05
        while not self.stopping:
            try:
                return connect(url, check=False, **options)
            except UsageError as e:
                self._error(e)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        return None

    def _handle(self, target: redis.Redis, recorder: CompletionRecorder, deliveries: list[Delivery]) -> None:
        protocol = self.protocol
        jobs, acked, foreign = [], [], []
        for delivery in deliveries:
            job = decode(delivery.body)
            if job is None:
                foreign.append(delivery)
            else:
                jobs.append(job)
                acked.append(delivery)
        if foreign:
            self._retry(lambda: self._park_foreign(target, foreign))
        if not jobs:
            return
        if self.work_ms:
            gevent.sleep(self.work_ms * len(jobs) / 1000)
        now = time.time()
        completions = [(job, (now - job.enqueued_at) * 1000) for job in jobs]
        in_one_transaction = self.same_server and protocol.needs_ack
        ack = (lambda pipe: protocol.ack(target, acked, pipe)) if in_one_transaction else None
        attempts = 0

        def record() -> int:
            nonlocal attempts
            attempts += 1
            return recorder.record(completions, ack=ack, retry=attempts > 1)

        duplicates = self._retry(record)
        if protocol.needs_ack and not in_one_transaction:
            self._retry(lambda: protocol.ack(target, acked))
        self.completed += len(jobs)
        self.duplicates += duplicates
        for job in jobs:
            self.completed_by_run[job.run_id] = self.completed_by_run.get(job.run_id, 0) + 1
            self._run_last_seen[job.run_id] = now
        for _, e2e_ms in completions:
            self._histogram.add(e2e_ms)
        self._last_completion = time.monotonic()

    def _park_foreign(self, target: redis.Redis, deliveries: list[Delivery]) -> None:
        pipe = target.pipeline(transaction=False)
        pipe.lpush(foreign_jobs_key(self.queue), *(d.body for d in deliveries))
        if self.protocol.needs_ack:
            self.protocol.ack(target, deliveries, pipe)
        pipe.execute()
        self.foreign += len(deliveries)

    def _retry(self, operation):
        """A fetched job must not vanish because the ledger blinked: retry with backoff before giving up."""
        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        backoff = 0.05
        while True:
            try:
                return operation()
            except NETWORK_ERRORS as e:
                self._error(e)
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _error(self, e: Exception) -> None:
        self.errors += 1
        message = f"{type(e).__name__}: {e}"
        if message != self.last_error:
            self.last_error = message
            print(f"[drain {os.getpid()}] {message}", file=sys.stderr, flush=True)

    def _monitor(self) -> None:
        protocol, client = self.protocol, self._monitor_client
        tick = min(0.5, self.stats_interval, protocol.visibility_timeout / 3)
        last_print = last_heartbeat = last_reap = last_sweep = time.monotonic()
        sweep_every = max(protocol.visibility_timeout / 2, socket_timeout_for(self.block_seconds) + 1)
        suspects: set[bytes] = set()
        while not self.stopping:
            gevent.sleep(tick)
            now = time.monotonic()
            try:
                if now - last_heartbeat >= protocol.visibility_timeout / 3:
                    protocol.heartbeat(client)
                    last_heartbeat = now
                if now - last_reap >= protocol.visibility_timeout / 2:
                    self.recovered += protocol.recover_abandoned(client)
                    last_reap = now
                if self._held is not None and now - last_sweep >= sweep_every:
                    returned, suspects = protocol.sweep_orphans(client, set(self._held), suspects)
                    self.recovered += returned
                    last_sweep = now
                self.depth = protocol.depth(client)
            except NETWORK_ERRORS as e:
                self._error(e)
                continue
            if now - last_print >= self.stats_interval:
                self._print_stats()
                last_print = now
            idle = now - self._last_completion
            if self.until_empty and self.depth == 0 and idle >= 2 * self.block_seconds:
                self.stop()

    def _report_loop(self) -> None:
        """Every REPORT_SECONDS, and soon after the last completion of a burst: a run's check, which waits for
        completions to stand still for POLL_SECONDS, then reads the drain's final count."""
        last_at, last_count, published_count = time.monotonic(), self.completed, self.completed
        while True:
            gevent.sleep(IDLE_REPORT_SECONDS)
            now = time.monotonic()
            if now - last_at >= REPORT_SECONDS:
                self._report_rate = (self.completed - last_count) / (now - last_at)
                last_at, last_count = now, self.completed
            elif self.completed == published_count or now - self._last_completion < IDLE_REPORT_SECONDS:
                continue
            published_count = self.completed
            self._publish()

    def _publish(self, final: bool = False) -> None:
        """Vitals and throughput, under every run this process completed jobs of lately (see drain_reports)."""
        horizon = time.time() - RECENT_RUN_SECONDS
        runs = [run_id for run_id, seen in self._run_last_seen.items() if seen >= horizon]
        if not runs:
            return
        common = dict(self.vitals.summary(), rate=round(self._report_rate, 1), completed_total=self.completed,
                      duplicates=self.duplicates, foreign=self.foreign, errors=self.errors, final=final)
        try:
            if self._report_client is None:
                self._report_client = (self._monitor_client if self.same_server
                                       else connect(self.ledger_url, check=False))
            drain_reports.publish(self._report_client, self.consumer_id,
                                  {run_id: dict(common, completed=self.completed_by_run[run_id]) for run_id in runs})
        except NETWORK_ERRORS as e:
            self._error(e)
        except UsageError as e:  # the ledger refused a new connection (max clients): next time
            self._error(e)

    def _print_stats(self, final: bool = False) -> None:
        now = time.monotonic()
        since = self._last_stats_at
        rate = (self.completed - self._last_count) / (now - since) if since else 0.0
        self._last_stats_at, self._last_count = now, self.completed
        line = {
            "drain": os.getpid(),
            "completed": self.completed,
            "rate": round(rate, 1),
            "depth": self.depth,
            "e2e_p95_ms": self._histogram.percentile(95),
            "duplicates": self.duplicates,
            "recovered": self.recovered,
            "foreign": self.foreign,
            "errors": self.errors,
            "rss_mb": self.vitals.rss.last,
            "cpu_pct": None if self.vitals.cpu.last is None else round(self.vitals.cpu.last),
            "lag_ms_max": round(self.vitals.lag.max, 1),
        }
        if final:
            line["final"] = True
        self._histogram.reset()
        self.out.write(json.dumps(line) + "\n")  # one write: processes sharing a pipe never interleave a line
        self.out.flush()


def run_processes(commands: list[list[str]]) -> int:
    """Run drain processes side by side, passing SIGTERM/SIGINT on; the worst exit code wins."""
    children = [subprocess.Popen(cmd) for cmd in commands]

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes)
