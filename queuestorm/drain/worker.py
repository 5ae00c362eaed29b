"""The drain worker: gevent greenlets that fetch jobs, do their work, record completion, then acknowledge."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import gevent
import redis

from ..ledger import drain_reports
from ..redis.connection import DRAIN_CLIENT, NETWORK_ERRORS, connect, redact, socket_timeout_for
from ..model.errors import EXIT_FAILED, EXIT_PASS, UsageError
from ..model.jobs import JobRef, decode, has_marker, run_id_of
from ..model.keys import RunKeys, parking_key, valid_run_id
from ..ledger.latency import LocalHistogram
from ..ledger.writer import CompletionRecorder
from ..protocols.preflight import ready_for
from ..protocols import Delivery, make_protocol, require_server_version
from ..ledger.recordable import LedgerRuns
from ..observe.vitals import VitalsSampler
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT
from ..model.periodic import every

MAX_BACKOFF = 2.0
RECORD_RETRY_SECONDS = 30.0
IDLE_REPORT_SECONDS = 0.2
REPORT_SECONDS = 1.0
RECENT_RUN_SECONDS = 120.0
INVALID_JOBS_NAMED = 20  # on stderr, one line each; the stats line counts them all


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
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
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
        self.invalid = 0
        self.unrecorded = 0  # jobs whose record failed for good (the ledger stayed unreachable)
        self.recovered = 0
        self.errors = 0
        self.depth: int | None = None
        self.last_error = ""
        self._last_completion = time.monotonic()
        self._histogram = LocalHistogram()
        self._last_stats_at: float | None = None
        self._last_count = 0
        # bodies fetched and not yet acknowledged, for the protocols that sweep their own orphans
        self._held: set[bytes] | None = set() if self.protocol.sweeps_orphans else None
        self.completed_by_run: dict[str, int] = {}
        self._held_by_run: dict[str, Counter] = {}  # job ids fetched and not yet acknowledged, per run
        self._held_changed = False
        self._ledger_runs = LedgerRuns()
        self._run_last_seen: dict[str, float] = {}
        self._announced = False
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
        reporter = self._start_reports()
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
        return EXIT_FAILED if self.invalid or self.unrecorded else EXIT_PASS

    def stop(self, *_):
        self.stopping = True

    def _consume(self) -> None:
        protocol = self.protocol
        target = self._connect(self.redis_url, block_seconds=self.block_seconds, name=DRAIN_CLIENT)
        ledger = target if self.same_server else self._connect(self.ledger_url)
        if target is None or ledger is None:
            return
        recorder = CompletionRecorder(ledger)
        self._announce_ready(ledger)
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
            fetched = [(delivery, decode(delivery.body)) for delivery in deliveries]
            self._hold(fetched)
            # network errors were retried for RECORD_RETRY_SECONDS; the jobs are left unacknowledged, for redelivery
            try:
                self._handle(target, recorder, fetched)
            except (*NETWORK_ERRORS, redis.ResponseError) as e:
                self._error(e)
                self.unrecorded += sum(1 for _, job in fetched if job is not None)
            finally:
                self._let_go(fetched)

    def _hold(self, fetched: list[tuple[Delivery, JobRef | None]]) -> None:
        if self._held is not None:
            self._held.update(delivery.body for delivery, _ in fetched)
        now = time.time()
        for _, job in fetched:
            if job is not None:
                self._held_by_run.setdefault(job.run_id, Counter())[job.job_id] += 1
                self._run_last_seen[job.run_id] = now
                self._held_changed = True

    def _let_go(self, fetched: list[tuple[Delivery, JobRef | None]]) -> None:
        if self._held is not None:
            self._held.difference_update(delivery.body for delivery, _ in fetched)
        for _, job in fetched:
            if job is not None:
                held = self._held_by_run[job.run_id]
                held[job.job_id] -= 1
                if held[job.job_id] <= 0:
                    del held[job.job_id]
                self._held_changed = True

    def _announce_ready(self, ledger: redis.Redis) -> None:
        """Once, when the first consumer has connected: the run that started this drain ($QS_RUN_ID, an inline
        drain) finds its report and knows the drain is consuming."""
        run_id = os.environ.get("QS_RUN_ID", "")
        if self._announced or not valid_run_id(run_id):
            return
        self._announced = True
        try:
            if not self._ledger_runs.exists(ledger, run_id):
                return
        except NETWORK_ERRORS as e:
            self._error(e)
            return
        self._run_last_seen[run_id] = time.time()
        self._publish()

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

    def _handle(self, target: redis.Redis, recorder: CompletionRecorder,
                fetched: list[tuple[Delivery, JobRef | None]]) -> None:
        foreign, invalid, jobs = self._sort(recorder.client, fetched)
        if foreign:
            self._retry(lambda: self._park(target, "foreign", foreign))
            self.foreign += len(foreign)
        if invalid:
            self._park_invalid(target, recorder.client, invalid)
        if not jobs:
            return
        if self.work_ms:
            gevent.sleep(self.work_ms * len(jobs) / 1000)
        try:
            self._record(target, recorder, jobs)
        except redis.ResponseError as e:  # something validation did not foresee: find the job, let the rest pass
            self._error(e)
            self._record_one_by_one(target, recorder, jobs)

    def _sort(self, ledger: redis.Redis, fetched):
        """(foreign deliveries, [(delivery, job or None, why)] the ledger cannot record, [(delivery, job)] it can)."""
        foreign, invalid, marked = [], [], []
        for delivery, job in fetched:
            if job is not None:
                marked.append((delivery, job))
            elif has_marker(delivery.body):
                invalid.append((delivery, None, "marker that does not parse"))
            else:
                foreign.append(delivery)
        problems = self._retry(lambda: self._ledger_runs.problems(ledger, [job for _, job in marked]))
        jobs = []
        for (delivery, job), problem in zip(marked, problems):
            if problem is None:
                jobs.append((delivery, job))
            else:
                invalid.append((delivery, job, problem))
        return foreign, invalid, jobs

    def _record(self, target: redis.Redis, recorder: CompletionRecorder, jobs, retried: bool = False) -> None:
        """Completions recorded, then acknowledged (in the same MULTI where the ledger lives on the target).
        `retried`: an earlier attempt at these jobs may have been applied."""
        protocol = self.protocol
        deliveries = [delivery for delivery, _ in jobs]
        now = time.time()
        completions = [(job, (now - job.enqueued_at) * 1000) for _, job in jobs]
        in_one_transaction = self.same_server and protocol.needs_ack
        ack = (lambda pipe: protocol.ack(target, deliveries, pipe)) if in_one_transaction else None
        attempts = 0

        def record() -> int:
            nonlocal attempts
            attempts += 1
            return recorder.record(completions, ack=ack, retry=retried or attempts > 1)

        duplicates = self._retry(record)
        if protocol.needs_ack and not in_one_transaction:
            self._retry(lambda: protocol.ack(target, deliveries))
        self._count_completed(completions, duplicates, now)

    def _record_one_by_one(self, target: redis.Redis, recorder: CompletionRecorder, jobs) -> None:
        unrecordable = []
        for delivery, job in jobs:
            try:
                self._record(target, recorder, [(delivery, job)], retried=True)
            except redis.ResponseError as e:
                self._error(e)
                unrecordable.append((delivery, job, f"record failed: {e}"))
        if unrecordable:
            self._park_invalid(target, recorder.client, unrecordable)

    def _count_completed(self, completions: list[tuple[JobRef, float]], duplicates: int, now: float) -> None:
        self.completed += len(completions)
        self.duplicates += duplicates
        for job, e2e_ms in completions:
            self.completed_by_run[job.run_id] = self.completed_by_run.get(job.run_id, 0) + 1
            self._run_last_seen[job.run_id] = now
            self._histogram.add(e2e_ms)
        self._last_completion = time.monotonic()

    def _park(self, target: redis.Redis, kind: str, deliveries: list[Delivery]) -> None:
        """Each job kept whole on queuestorm:<kind>:<queue> and taken off the queue, in one MULTI: never one without
        the other."""
        pipe = target.pipeline(transaction=True)
        for delivery in deliveries:
            queue, parked = self.protocol.parked(delivery)
            pipe.lpush(parking_key(kind, queue), parked)
        self.protocol.release(target, deliveries, pipe)
        pipe.execute()

    def _park_invalid(self, target: redis.Redis, ledger: redis.Redis, invalid) -> None:
        """Parked, then counted under its run in the ledger when the run is known (RunKeys.invalid)."""
        self._retry(lambda: self._park(target, "invalid", [delivery for delivery, _, _ in invalid]))
        named_before = self.invalid
        self.invalid += len(invalid)
        for delivery, job, why in invalid[:max(0, INVALID_JOBS_NAMED - named_before)]:
            name = job.job_id if job is not None else repr(delivery.body[:60])
            print(f"[drain {os.getpid()}] job {name} cannot be recorded ({why}): parked in "
                  f"{parking_key('invalid', self.protocol.parked(delivery)[0])}", file=sys.stderr, flush=True)
        per_run = Counter(job.run_id if job is not None else run_id_of(delivery.body) for delivery, job, _ in invalid)
        known = {run_id: count for run_id, count in per_run.items() if run_id is not None and valid_run_id(run_id)
                 and self._retry(lambda: self._ledger_runs.exists(ledger, run_id))}
        if known:
            self._retry(lambda: self._count_invalid(ledger, known))

    def _count_invalid(self, ledger: redis.Redis, per_run: dict[str, int]) -> None:
        pipe = ledger.pipeline(transaction=False)
        for run_id, count in per_run.items():
            pipe.incrby(RunKeys(run_id).invalid, count)
        pipe.execute()

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

    def _start_reports(self):
        """Every REPORT_SECONDS, soon after the last completion of a burst (a run's check waits for completions to
        stand still for POLL_SECONDS, then reads the drain's final count), and soon after the held jobs changed (the
        settle phase waits for nothing to be held)."""
        self._rate_since, self._rate_count = time.monotonic(), self.completed
        self._published_count = self.completed
        return every(IDLE_REPORT_SECONDS, self._report_if_due)

    def _report_if_due(self) -> None:
        now = time.monotonic()
        if now - self._rate_since >= REPORT_SECONDS:
            self._report_rate = (self.completed - self._rate_count) / (now - self._rate_since)
            self._rate_since, self._rate_count = now, self.completed
        elif not self._held_changed and (self.completed == self._published_count
                                         or now - self._last_completion < IDLE_REPORT_SECONDS):
            return
        self._published_count = self.completed
        self._held_changed = False
        self._publish()

    def _publish(self, final: bool = False) -> None:
        """Vitals, throughput and the jobs held, under every run this process fetched jobs of lately or holds jobs of
        now (see drain_reports)."""
        horizon = time.time() - RECENT_RUN_SECONDS
        runs = [run_id for run_id, seen in self._run_last_seen.items()
                if (seen >= horizon or self._held_by_run.get(run_id)) and self._ledger_runs.known(run_id)]
        if not runs:
            return
        common = dict(self.vitals.summary(), rate=round(self._report_rate, 1), completed_total=self.completed,
                      duplicates=self.duplicates, foreign=self.foreign, invalid=self.invalid, errors=self.errors,
                      final=final)
        try:
            if self._report_client is None:
                self._report_client = (self._monitor_client if self.same_server
                                       else connect(self.ledger_url, check=False))
            drain_reports.publish(self._report_client, self.consumer_id,
                                  {run_id: dict(common, **self._run_report(run_id)) for run_id in runs})
        except NETWORK_ERRORS as e:
            self._error(e)
        except UsageError as e:  # the ledger refused a new connection (max clients): next time
            self._error(e)

    def _run_report(self, run_id: str) -> dict:
        held = self._held_by_run.get(run_id, Counter())
        return {"completed": self.completed_by_run.get(run_id, 0), "held": held.total(),
                "held_ids": sorted(held.elements())}

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
            "invalid": self.invalid,
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
