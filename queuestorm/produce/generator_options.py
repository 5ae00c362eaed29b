"""The generator-consumer scenario's settings (seed 002), and the rules they define: work time, invalid jobs."""

import random
from dataclasses import dataclass
from fractions import Fraction

from ..model.keys import default_error_queue
from ..model.option_types import ms_range, ratio


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
            work_ms=ms_range(options.consumer_work_ms),
            invalid_ratio=ratio(options.invalid_ratio),
            error_queue=options.error_queue or default_error_queue(queue),
        )

    def work_seconds(self) -> float:
        return random.uniform(*self.work_ms) / 1000

    def is_invalid(self, seq: int) -> bool:
        """Exactly floor(n * ratio) of a producer's sequence numbers 0..n-1 are invalid, evenly spread."""
        r = self.invalid_ratio
        return (seq + 1) * r // 1 > seq * r // 1


def expected_invalid(enqueued: int, invalid_ratio) -> int:
    """How many of a producer's first `enqueued` jobs are invalid."""
    return int(enqueued * ratio(invalid_ratio) // 1)
