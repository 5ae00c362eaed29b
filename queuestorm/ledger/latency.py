"""End-to-end latency as a log-bucketed histogram (about 2% resolution) that many processes add to in Redis."""

import math

BUCKETS_PER_E = 50


def bucket_of(ms: float) -> int:
    return round(math.log(max(ms, 0.001)) * BUCKETS_PER_E)


def value_of(bucket: int) -> float:
    return math.exp(bucket / BUCKETS_PER_E)


def percentiles(histogram: dict[int, int], points=(50, 95, 99)) -> dict[str, float | None]:
    """{'p50': ms, ..., 'max': ms} from bucket counts; None everywhere when empty."""
    names = [f"p{p:g}" for p in points] + ["max"]
    total = sum(histogram.values())
    if not total:
        return dict.fromkeys(names)
    ordered = sorted(histogram.items())
    result = {}
    for p, name in zip(points, names):
        rank = math.ceil(total * p / 100)
        seen = 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                result[name] = round(value_of(bucket), 2)
                break
    result["max"] = round(value_of(ordered[-1][0]), 2)
    return result


class LocalHistogram:
    """The same buckets in memory, for one process's periodic stats line."""

    def __init__(self):
        self.counts: dict[int, int] = {}

    def add(self, ms: float) -> None:
        b = bucket_of(ms)
        self.counts[b] = self.counts.get(b, 0) + 1

    def percentile(self, p: float) -> float | None:
        return percentiles(self.counts, (p,))[f"p{p:g}"]

    def reset(self) -> None:
        self.counts = {}
