"""The capacity search of --find-capacity, without Locust or Redis: which target rate to try next, whether a step
held, what limited it (in words), and the result.

Steps grow geometrically from the first rate until one fails, then bisect between the last good and the first
failing rate until they are within the precision, then confirm the rate to report with one more step. A step the
load generator could not issue says nothing about the queue: the search stops there and names the generator.
"""

import math
from dataclasses import asdict, dataclass, field

GROWTH = 2.0
MAX_STEPS = 40
MAX_CONFIRMATIONS = 3
LOWEST_RATE = 0.5  # jobs/s: a queue failing below this has no capacity worth searching for
MIN_ACHIEVED = 0.9  # of the target: a generator issuing less could not do the step
SATURATED_CPU_PCT = 90.0
SLOPE_TOLERANCE = 0.03  # of the target: a backlog growing slower than this is noise, not a trend
MIN_SLOPE = 2.0  # jobs/s
MIN_GROWTH = 10  # jobs: what a drain's jobs in hand and a burst of enqueues move the depth by
MAX_CLIENTS_ERROR = "max number of clients"

GENERATOR = "generator"


@dataclass
class StepLimits:
    e2e_p99_ms: float = 1000.0
    enqueue_p99_ms: float = 250.0
    max_error_ratio: float = 0.01
    min_achieved: float = MIN_ACHIEVED
    saturated_cpu_pct: float = SATURATED_CPU_PCT


@dataclass
class StepFigures:
    """What one step measured over its steady part (its ramp excluded). None: not measured."""

    target: float
    achieved: float
    seconds: float
    phase: str = "grow"
    processes: int = 1
    requests: int = 0
    failures: int = 0
    dropped: int = 0
    enqueue_p50_ms: float | None = None
    enqueue_p99_ms: float | None = None
    e2e_p99_ms: float | None = None
    backlog_slope: float | None = None
    backlog_end: int | None = None
    unaccounted_slope: float | None = None
    errors: dict = field(default_factory=dict)
    connections_peak: int | None = None
    rejected_connections: int = 0
    redis_cpu_pct: float | None = None
    generator_cpu_pct: float | None = None
    latency_breaches: list = field(default_factory=list)


@dataclass
class StepJudgement:
    ok: bool
    kind: str = ""  # what failed: max_clients, errors, generator, redis_latency, latency, lost, drain, e2e
    factor: str = ""  # the limiting factor in words


def slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, value) samples, per second; None with fewer than 3 samples or no time span."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread


def grows(rate_of_growth: float | None, target: float, seconds: float = math.inf) -> bool:
    """A trend, not noise: faster than SLOPE_TOLERANCE of the target rate and than MIN_SLOPE, adding MIN_GROWTH jobs
    at least over the `seconds` measured (a short step resolves only a coarse overload)."""
    return (rate_of_growth is not None and rate_of_growth > max(MIN_SLOPE, SLOPE_TOLERANCE * target)
            and rate_of_growth * seconds >= MIN_GROWTH)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}".rstrip("0").rstrip(".")


def workers_needed(step: StepFigures) -> int:
    """Locust processes that would issue the step's target, at what each achieved."""
    per_process = step.achieved / max(step.processes, 1)
    return math.ceil(step.target / per_process) if per_process > 0 else 0


def _dropped_ratio(step: StepFigures) -> float:
    wanted = step.target * step.seconds
    return min(1.0, step.dropped / wanted) if wanted > 0 else 0.0


def _generator_factor(step: StepFigures) -> str:
    short = max(_dropped_ratio(step), 1 - step.achieved / step.target if step.target else 0.0)
    words = f"load generator: {100 * short:.0f} % dropped (issued {_rate(step.achieved)}/s of {_rate(step.target)}/s"
    if step.generator_cpu_pct is not None:
        words += f", CPU {step.generator_cpu_pct:.0f} %"
    needed = workers_needed(step)
    saturated = step.generator_cpu_pct is not None and step.generator_cpu_pct >= SATURATED_CPU_PCT
    if saturated or step.generator_cpu_pct is None:
        return words + f"); about {needed} Locust worker processes needed"
    return words + f"); more users needed (each waits for its enqueue), or about {needed} Locust worker processes"


def judge_step(step: StepFigures, limits: StepLimits) -> StepJudgement:
    """The first limit the step crossed, in the order that blames the right part: the server refusing, then a
    generator out of breath (whose own lag would inflate every latency), then latency, loss and the backlog."""
    max_clients = sum(n for kind, n in step.errors.items() if MAX_CLIENTS_ERROR in kind.lower())
    if max_clients or step.rejected_connections:
        at = f" at {step.connections_peak} connections" if step.connections_peak is not None else ""
        return StepJudgement(False, "max_clients", f"redis: max clients{at} "
                                                   f"({max_clients + step.rejected_connections} refused)")
    if step.requests and step.failures / step.requests > limits.max_error_ratio:
        worst = max(step.errors.items(), key=lambda item: item[1])[0] if step.errors else "failed"
        return StepJudgement(False, "errors", f"redis: {100 * step.failures / step.requests:.1f} % of enqueues "
                                              f"failed ({worst})")
    short = step.target > 0 and (step.achieved < limits.min_achieved * step.target
                                 or _dropped_ratio(step) > 1 - limits.min_achieved)
    saturated = step.generator_cpu_pct is not None and step.generator_cpu_pct >= limits.saturated_cpu_pct
    if short and saturated:
        return StepJudgement(False, GENERATOR, _generator_factor(step))
    if step.enqueue_p99_ms is not None and step.enqueue_p99_ms > limits.enqueue_p99_ms:
        return StepJudgement(False, "redis_latency", f"redis: enqueue p99 {step.enqueue_p99_ms:,.0f} ms over "
                                                     f"{limits.enqueue_p99_ms:g} ms")
    if short:
        return StepJudgement(False, GENERATOR, _generator_factor(step))
    if step.latency_breaches:
        return StepJudgement(False, "latency", "; ".join(step.latency_breaches))
    if grows(step.unaccounted_slope, step.target, step.seconds):
        return StepJudgement(False, "lost", f"jobs lost: {_rate(step.unaccounted_slope)}/s neither queued nor "
                                            "completed")
    if grows(step.backlog_slope, step.target, step.seconds):
        return StepJudgement(False, "drain", f"drain fleet: backlog grows at {_rate(step.backlog_slope)}/s")
    if step.e2e_p99_ms is not None and step.e2e_p99_ms > limits.e2e_p99_ms:
        return StepJudgement(False, "e2e", f"drain fleet: e2e p99 {step.e2e_p99_ms:,.0f} ms over "
                                           f"{limits.e2e_p99_ms:g} ms")
    return StepJudgement(True)


@dataclass
class RecordedStep:
    figures: StepFigures
    judgement: StepJudgement

    def to_json(self) -> dict:
        return dict(asdict(self.figures), ok=self.judgement.ok, failed_on=self.judgement.kind,
                    limiting_factor=self.judgement.factor)


class CapacitySearch:
    """next_rate() → hold that rate for a step → record(figures, judgement) → ... until next_rate() is None."""

    def __init__(self, first_rate: float, precision: float = 0.05, max_rate: float = 0.0, growth: float = GROWTH,
                 max_steps: int = MAX_STEPS):
        self.precision = precision
        self.max_rate = max_rate
        self.growth = growth
        self.max_steps = max_steps
        self.steps: list[RecordedStep] = []
        self.good: float | None = None  # highest target that held
        self.bad: RecordedStep | None = None  # lowest target that failed on the queue's side
        self.generator: RecordedStep | None = None
        self.confirmed = False
        self.confirmations = 0
        self.interrupted = False
        self.phase = "grow"
        self._next: float | None = min(first_rate, max_rate) if max_rate else first_rate

    @property
    def done(self) -> bool:
        return self._next is None

    def next_rate(self) -> float | None:
        return self._next

    def record(self, figures: StepFigures, judgement: StepJudgement) -> None:
        figures.phase = self.phase
        step = RecordedStep(figures, judgement)
        self.steps.append(step)
        target = figures.target
        if judgement.kind == GENERATOR:
            self.generator = step
            self._next = None
            return
        if judgement.ok:
            self.good = target if self.good is None else max(self.good, target)
        else:
            if self.bad is None or target < self.bad.figures.target:
                self.bad = step
            if self.good is not None and self.good >= target:  # an earlier good rate failed when held again
                held = [s.figures.target for s in self.steps if s.judgement.ok and s.figures.target < target]
                self.good = max(held) if held else None
        if self.phase == "confirm" and judgement.ok:
            self.confirmed = True
            self._next = None
            return
        self._next = self._choose()

    def _choose(self) -> float | None:
        if len(self.steps) >= self.max_steps:
            return None
        if self.bad is None:  # nothing failed yet: grow
            last = self.steps[-1].figures.target
            if self.max_rate and last >= self.max_rate:
                return None
            return min(last * self.growth, self.max_rate) if self.max_rate else last * self.growth
        bad = self.bad.figures.target
        if self.good is None:  # failing from the first step: come down
            lower = bad / self.growth
            return lower if lower >= LOWEST_RATE else None
        if (bad - self.good) / bad <= self.precision:
            if self.phase == "confirm":
                self.confirmations += 1
                if self.confirmations >= MAX_CONFIRMATIONS:
                    return None
            self.phase = "confirm"
            return self.good
        self.phase = "bisect"
        return round((self.good + bad) / 2, 2)

    def limiting_factor(self) -> str:
        if self.generator is not None:
            return self.generator.judgement.factor
        if self.bad is not None:
            return self.bad.judgement.factor
        if self.steps:
            return f"none found up to {_rate(max(s.figures.target for s in self.steps))}/s"
        return "no step was measured"

    def result(self) -> dict:
        processes = max((s.figures.processes for s in self.steps), default=1)
        doc = {
            "sustainable_rate": self.good,
            "first_failing_rate": self.bad.figures.target if self.bad is not None else None,
            "limiting_factor": self.limiting_factor(),
            "limited_by": (GENERATOR if self.generator is not None else self.bad.judgement.kind if self.bad else ""),
            "confirmed": self.confirmed,
            "precision": self.precision,
            "processes": processes,
            "sustainable_per_process": round(self.good / processes, 1) if self.good is not None else None,
            "interrupted": self.interrupted,
            "steps": [s.to_json() for s in self.steps],
        }
        if self.generator is not None:
            doc["workers_needed"] = workers_needed(self.generator.figures)
        return doc


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _errors(errors: dict) -> str:
    return ", ".join(f"{n} {kind[:40]}" for kind, n in sorted(errors.items(), key=lambda i: -i[1])[:2]) or "-"


def render_capacity(result: dict, grid) -> str:
    """The steps as a table and the result below it; `grid` is report.grid."""
    headers = ["step", "phase", "target/s", "achieved/s", "enqueue p50/p99 ms", "e2e p99 ms", "backlog /s",
               "errors", "conns", "redis cpu %", "held"]
    rows = []
    for index, s in enumerate(result["steps"], 1):
        backlog = s["backlog_slope"]
        rows.append([index, s["phase"], _rate(s["target"]), _rate(s["achieved"]),
                     f"{_ms(s['enqueue_p50_ms'])} / {_ms(s['enqueue_p99_ms'])}", _ms(s["e2e_p99_ms"]),
                     "-" if backlog is None else f"{backlog:+,.1f}", _errors(s["errors"]), s["connections_peak"],
                     s["redis_cpu_pct"], "yes" if s["ok"] else "no: " + s["failed_on"]])
    sustainable, failing = result["sustainable_rate"], result["first_failing_rate"]
    lines = [grid("Capacity search", headers, rows)]
    held = "-" if sustainable is None else f"{_rate(sustainable)} jobs/s" + (
        "" if result["confirmed"] else " (not confirmed)")
    if sustainable is not None and result["processes"] > 1:
        held += f" ({_rate(result['sustainable_per_process'])}/s per Locust process, {result['processes']} processes)"
    lines.append(f"sustainable rate: {held}")
    lines.append(f"first failing rate: {'-' if failing is None else _rate(failing) + ' jobs/s'}")
    lines.append(f"limiting factor: {result['limiting_factor']}" + (" (search interrupted)"
                                                                    if result["interrupted"] else ""))
    return "\n".join(lines)
