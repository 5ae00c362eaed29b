"""Options of the generator-consumer scenario (seed 002), and the rules they define: work time, invalid jobs."""

import argparse
import math
import random
from dataclasses import dataclass
from fractions import Fraction

from ..ledger.error_queue import default_error_queue
from ..model.option_types import LARGEST, bounded


def work_range(text: str) -> tuple[float, float]:
    """'MIN-MAX' or 'N' milliseconds."""
    low, sep, high = str(text).partition("-")
    try:
        bounds = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX milliseconds (like 1-5), got {text!r}") from None
    if not all(map(math.isfinite, bounds)) or bounds[0] < 0 or bounds[1] < bounds[0] or bounds[1] > LARGEST:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX milliseconds, got {text!r}")
    return bounds


def _checked(parse):
    def check(text):
        parse(text)
        return str(text)  # kept as text: Locust hands custom options to its workers as they were parsed
    return check


def _ratio(text) -> Fraction:
    try:
        value = Fraction(str(text)).limit_denominator(10**6)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def add_arguments(parser) -> None:
    group = parser.add_argument_group("queuestorm generator-consumer", "GeneratorUser and ConsumerUser (seed 002)")
    group.add_argument("--generator-interval-ms", env_var="QS_GENERATOR_INTERVAL_MS", type=bounded(low=0.1),
                       default=500.0, help="ms between two jobs pushed by the generator (default: 500)")
    group.add_argument("--generators", env_var="QS_GENERATORS", type=bounded(int, high=10000), default=1,
                       help="GeneratorUsers to spawn: one generates, the others wait as standby (default: 1)")
    group.add_argument("--generator-check-seconds", env_var="QS_GENERATOR_CHECK_SECONDS", type=bounded(low=0.1),
                       default=10.0, help="seconds between consumers' checks that the generator lives; also the "
                                          "generator lock's expiry (default: 10)")
    group.add_argument("--generator-stop-after", env_var="QS_GENERATOR_STOP_AFTER", type=bounded(), default=0.0,
                       help="a GeneratorUser stops this many seconds after it started generating, releasing "
                            "nothing, as a crash would (0 = never)")
    group.add_argument("--consumer-work-ms", env_var="QS_CONSUMER_WORK_MS", type=_checked(work_range), default="1-5",
                       help="ms a ConsumerUser spends on each job, drawn uniformly from MIN-MAX (default: 1-5)")
    group.add_argument("--invalid-ratio", env_var="QS_INVALID_RATIO", type=_checked(_ratio), default="0",
                       help="fraction of jobs the consumers judge invalid and push to the error queue, chosen by "
                            "sequence number (default: 0)")
    group.add_argument("--error-queue", env_var="QS_ERROR_QUEUE", default="",
                       help="list receiving invalid jobs (default: QUEUE:errors)")


@dataclass
class GeneratorSettings:
    interval_s: float
    generators: int
    check_s: float
    stop_after_s: float
    work_ms: tuple[float, float]
    invalid_ratio: Fraction
    error_queue: str

    @classmethod
    def from_options(cls, options, queue: str) -> "GeneratorSettings":
        return cls(
            interval_s=float(options.generator_interval_ms) / 1000,
            generators=int(options.generators),
            check_s=float(options.generator_check_seconds),
            stop_after_s=float(options.generator_stop_after),
            work_ms=work_range(options.consumer_work_ms),
            invalid_ratio=_ratio(options.invalid_ratio),
            error_queue=options.error_queue or default_error_queue(queue),
        )

    def work_seconds(self) -> float:
        return random.uniform(*self.work_ms) / 1000

    def is_invalid(self, seq: int) -> bool:
        """Exactly floor(n * ratio) of a producer's sequence numbers 0..n-1 are invalid, evenly spread."""
        r = self.invalid_ratio
        return (seq + 1) * r // 1 > seq * r // 1


def expected_invalid(enqueued: int, ratio) -> int:
    """How many of a producer's first `enqueued` jobs are invalid."""
    return int(enqueued * _ratio(ratio) // 1)
