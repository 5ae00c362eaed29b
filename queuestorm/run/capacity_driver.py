"""--find-capacity in a run: a greenlet that sets the run's target rate step after step (through the path --rate
takes: this process's pacer, or the master's RATE message to its workers), measures each step's steady part and
feeds the search (queuestorm.capacity) until it has its answer, then stops the test."""

import logging
import time

import gevent
import redis

from .capacity import CapacitySearch, StepFigures, StepLimits, judge_step, render_capacity, slope
from ..ledger.latency import percentiles
from .thresholds import parse_latency_limits
from ..observe.vitals import cpu_seconds

log = logging.getLogger("queuestorm")

DEFAULT_FIRST_RATE = 100.0
RAMP_FRACTION = 0.3  # the first part of each step, while users and queue settle to the new rate, is not measured
SAMPLE_SECONDS = 0.25
PAUSE_RATE = 0.001  # between steps, while the backlog a failed step left drains
RECOVERY_STEPS = 3  # the longest such pause, in step lengths
FIRST_STEP_WAIT_SECONDS = 30.0
MASTER_RAMP_SECONDS = 2.5
PLATEAU_SECONDS, PLATEAU_GROWTH = 2, 1.1
RECOVERED_SECONDS = 0.2  # a backlog of this many seconds of the last rate counts as drained
ENQUEUE_EVENTS = ("enqueue", "send")  # EnqueueUser's, and the dyno dispatcher's
UNREAD = (redis.RedisError, OSError)  # a figure that could not be read: the step goes on without it


def limits_of(config) -> StepLimits:
    limits = StepLimits(e2e_p99_ms=config.capacity_latency_ms)
    if config.max_error_ratio is not None:
        limits.max_error_ratio = config.max_error_ratio
    for event, percentile, ms in parse_latency_limits(config.latency_limit):
        if event == "enqueue" and percentile == "p99":
            limits.enqueue_p99_ms = ms
    return limits


class StepMeter:
    """One step's steady part: figures at its start and end, and samples of the backlog in between."""

    def __init__(self, run, target: float, stats_window):
        self.run = run
        self.target = target
        self.stats_window = stats_window
        self.backlog: list[tuple[float, float]] = []
        self.clients: list[int] = []
        self.worker_cpu: list[float] = []
        self.reports: dict[str, list[tuple[float, int]]] = {}  # a worker's first and last report in the step

    def begin(self) -> None:
        run = self.run
        self.started = time.monotonic()
        self.cpu = cpu_seconds()
        self.window = self.stats_window(run.environment.stats)
        self.counts = run.session.counts_of(run)
        self.e2e = self._e2e_histogram()
        self.info = self._info()

    def _e2e_histogram(self) -> dict[int, int]:
        try:
            return self.run.ledger.e2e_histogram()
        except UNREAD:
            return {}

    def _info(self) -> dict:
        if not self.run.session.real_redis:
            return {}
        try:
            return self.run.target.info()
        except UNREAD:
            return {}

    def sample(self) -> None:
        run = self.run
        now = time.monotonic() - self.started
        if run.config.drain in ("inline", "external"):
            try:
                self.backlog.append((now, run.protocol.depth(run.target)))
            except UNREAD:
                pass
        if run.session.real_redis:
            try:
                self.clients.append(int(run.target.info("clients")["connected_clients"]))
            except (*UNREAD, KeyError, ValueError):
                pass
        board = run.session.board
        if board is not None:
            for client_id, report in list(board.reports.items()):
                mark = (report["received_at"], sum(report["counts"].get(k) or 0 for k in ("enqueued", "maybe_enqueued")))
                self.reports.setdefault(client_id, [mark, mark])[1] = mark
            loads = [v.get("cpu_pct_last") for v in board.vitals()]
            loads = [c for c in loads if c is not None]
            if loads:
                self.worker_cpu.append(max(loads))

    def _timeline_series(self, key) -> list[tuple[float, float]]:
        """Points of the run's timeline inside this step's steady part, as (t, value)."""
        timeline = self.run.timeline
        if timeline is None or timeline.started is None:
            return []
        since = self.started - timeline.started
        return [(p["t"], key(p)) for p in list(timeline.points) if p["t"] >= since]

    def end(self) -> StepFigures:
        run = self.run
        seconds = time.monotonic() - self.started
        counts = run.session.counts_of(run)
        issued = sum(counts[k] - self.counts[k] for k in ("enqueued", "maybe_enqueued"))
        times, requests, failures = self.window.event(ENQUEUE_EVENTS)
        e2e_now = self._e2e_histogram()
        e2e = percentiles({b: n - self.e2e.get(b, 0) for b, n in e2e_now.items() if n > self.e2e.get(b, 0)},
                          (99,))
        figures = StepFigures(
            target=self.target, achieved=round(issued / seconds, 1) if seconds > 0 else 0.0,
            seconds=round(seconds, 2), processes=self._processes(), requests=requests, failures=failures,
            dropped=counts["dropped"] - self.counts["dropped"], enqueue_p50_ms=self.window.percentile(times, 0.5),
            enqueue_p99_ms=self.window.percentile(times, 0.99), e2e_p99_ms=e2e["p99"], errors=self.window.error_kinds(),
            connections_peak=max(self.clients) if self.clients else None,
            latency_breaches=self.window.breaches(parse_latency_limits(run.config.latency_limit)),
        )
        if run.session.board is not None:
            figures.achieved = self._achieved_by_workers()
        self._backlog_figures(figures)
        self._redis_figures(figures, seconds)
        if run.session.board is None:
            figures.generator_cpu_pct = round((cpu_seconds() - self.cpu) / seconds * 100, 1) if seconds > 0 else None
        elif self.worker_cpu:
            figures.generator_cpu_pct = round(sum(self.worker_cpu) / len(self.worker_cpu), 1)
        return figures

    def _achieved_by_workers(self) -> float:
        """Each worker's rate between its first and last report of the step, by the times the reports came: the
        master's sum of counts moves a report at a time."""
        total = 0.0
        for (first_at, first), (last_at, last) in self.reports.values():
            if last_at > first_at:
                total += (last - first) / (last_at - first_at)
        return round(total, 1)

    def _processes(self) -> int:
        board = self.run.session.board
        return max(board.runner.worker_count, 1) if board is not None else 1

    def _backlog_figures(self, figures: StepFigures) -> None:
        drain = self.run.config.drain
        if drain == "off":
            return
        if drain == "users":  # consumers' own lists (dyno workers): what was enqueued and is not completed yet
            series = self._timeline_series(lambda p: p["enqueued"] - p["completed"])
        else:
            series = self.backlog
            figures.unaccounted_slope = _rounded(slope(self._timeline_series(lambda p: p["unaccounted"])))
        figures.backlog_slope = _rounded(slope(series))
        figures.backlog_end = int(series[-1][1]) if series else None

    def _redis_figures(self, figures: StepFigures, seconds: float) -> None:
        before, after = self.info, self._info()
        if not before or not after or seconds <= 0:
            return
        try:
            used = sum(float(after[k]) - float(before[k]) for k in ("used_cpu_sys", "used_cpu_user"))
            figures.redis_cpu_pct = round(used / seconds * 100, 1)
            figures.rejected_connections = int(after["rejected_connections"]) - int(before["rejected_connections"])
        except (KeyError, ValueError):
            pass


def _drained(rate: float) -> float:
    return max(10.0, RECOVERED_SECONDS * rate)


def _rounded(value):
    return None if value is None else round(value, 2)


class CapacityDriver:
    """`set_rate(rate)`: the whole run's target rate, over every process; `stop_test()`: ends the test."""

    def __init__(self, run, set_rate, stop_test, stats_window):
        """`stats_window(stats)`: Locust's statistics from now on (locust/stats_window.py's StatsWindow)."""
        self.run = run
        self.stats_window = stats_window
        c = run.config
        self.set_rate = set_rate
        self.stop_test = stop_test
        self.step_seconds = c.step_seconds
        self.limits = limits_of(c)
        processes = max(run.session.board.runner.worker_count, 1) if run.session.board is not None else 1
        first = c.rate or c.tasks_per_second * processes or DEFAULT_FIRST_RATE  # dynos: each its tasks/s
        self.search = CapacitySearch(first, precision=c.capacity_precision,
                                     max_rate=c.capacity_max_rate)
        self.current: StepMeter | None = None
        self._greenlet: gevent.Greenlet | None = None

    @property
    def first_rate(self) -> float:
        return self.search.next_rate()

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._search)

    def stop(self) -> None:
        """The test stopped (the search's end, --run-time, an interrupt): a search cut short says so."""
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.kill()
            self.search.interrupted = not self.search.done
        self._greenlet = None

    def result(self) -> dict:
        return self.search.result()

    def render(self, grid) -> str:
        return render_capacity(self.result(), grid)

    def _search(self) -> None:
        first = True
        while (rate := self.search.next_rate()) is not None:
            if not first:
                self._recover()
                self.set_rate(rate)
            figures = self._hold(rate, first)
            first = False
            judgement = judge_step(figures, self.limits)
            self.search.record(figures, judgement)
            log.info("capacity step %d: %s/s for %.0fs, achieved %.1f/s: %s", len(self.search.steps), rate,
                     self.step_seconds, figures.achieved, "held" if judgement.ok else judgement.factor)
        log.info("capacity search done: %s", self.search.limiting_factor())
        self.stop_test()

    def _hold(self, rate: float, first: bool) -> StepFigures:
        ramp = self.step_seconds * RAMP_FRACTION
        if self.run.session.board is not None:  # the workers' counts reach the master a report later
            ramp = max(ramp, MASTER_RAMP_SECONDS)
        gevent.sleep(ramp)
        if first:  # users and drain processes may still be starting: the first step is measured once both run
            wait = max(FIRST_STEP_WAIT_SECONDS, RECOVERY_STEPS * self.step_seconds)
            self._wait_for_load(rate, wait)
            self._wait_for_backlog(rate, wait)
        meter = self.current = StepMeter(self.run, rate, self.stats_window)
        meter.begin()
        deadline = meter.started + max(self.step_seconds - ramp, SAMPLE_SECONDS * 4)
        while time.monotonic() < deadline:
            gevent.sleep(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic())))
            meter.sample()
        return meter.end()

    def _recover(self) -> None:
        """Let the backlog a step left drain before the next one, so no step inherits the last one's wait."""
        last = self.search.steps[-1].figures
        if last.backlog_end is None or last.backlog_end <= _drained(last.target):
            return
        self.set_rate(PAUSE_RATE)
        if not self._wait_for_backlog(last.target, RECOVERY_STEPS * self.step_seconds):
            log.warning("capacity search: the backlog did not drain within %.0fs; the next step starts anyway",
                        RECOVERY_STEPS * self.step_seconds)

    def _wait_for_load(self, rate: float, seconds: float) -> None:
        """Until the producers issue the rate over a second, or their rate stopped growing (PLATEAU_SECONDS seconds
        each within PLATEAU_GROWTH of the one before: a generator that cannot issue it, which the step will name),
        or `seconds` passed."""
        deadline = time.monotonic() + seconds
        run = self.run
        before = run.session.counts_of(run)
        issued_per_second: list[int] = []
        while time.monotonic() < deadline:
            gevent.sleep(1.0)
            now = run.session.counts_of(run)
            issued_per_second.append(sum(now[k] - before[k] for k in ("enqueued", "maybe_enqueued")))
            before = now
            if issued_per_second[-1] >= self.limits.min_achieved * rate or _plateau(issued_per_second):
                return

    def _wait_for_backlog(self, rate: float, seconds: float) -> bool:
        """Until the backlog is down to what `rate` keeps in flight; False after `seconds`."""
        if self.run.config.drain == "off":
            return True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self._backlog() <= _drained(rate):
                    return True
            except UNREAD:
                pass
            gevent.sleep(SAMPLE_SECONDS)
        return False

    def _backlog(self) -> int:
        run = self.run
        if run.config.drain == "users":
            point = run.timeline.points[-1] if run.timeline is not None and run.timeline.points else None
            return point["enqueued"] - point["completed"] if point else 0
        return run.protocol.depth(run.target)


def _plateau(issued_per_second: list[int]) -> bool:
    """The last PLATEAU_SECONDS seconds' counts each non-zero and within PLATEAU_GROWTH of the one before."""
    last = issued_per_second[-PLATEAU_SECONDS - 1:]
    return len(last) == PLATEAU_SECONDS + 1 and all(0 < a and b <= a * PLATEAU_GROWTH for a, b in zip(last, last[1:]))
