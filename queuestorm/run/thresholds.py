"""Thresholds a run must stay within, beyond "nothing lost": each crossed one fails the run (exit 1) with a line
naming it and the measured value. Set as options, or in a scenario's `thresholds:` (which sets the same options)."""

import re

THRESHOLD_OPTIONS = {  # scenario key -> option
    "max_lost": "max-lost", "max_duplicated": "max-duplicated", "max_error_ratio": "max-error-ratio",
    "min_rate": "min-rate", "backlog_limit": "backlog-limit",
}
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999, "max": 1.0}
_LIMIT = re.compile(r"^\s*([^:,=]+):(p50|p90|p95|p99|p999|max)=(\d+(?:\.\d+)?)\s*$")


def latency_option(mapping) -> str:
    """{enqueue: {p95: 50}} -> "enqueue:p95=50" (the --latency-limit form)."""
    if not isinstance(mapping, dict):
        raise TypeError("must map event names to {p95: ms, ...}")
    parts = []
    for event, limits in mapping.items():
        if not isinstance(limits, dict):
            raise TypeError(f"{event}: must map percentiles (p50, p90, p95, p99, p999, max) to ms")
        for percentile, ms in limits.items():
            parts.append(f"{event}:{percentile}={ms}")
    parse_latency_limits(",".join(parts))
    return ",".join(parts)


def parse_latency_limits(text: str) -> list[tuple[str, str, float]]:
    limits = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        found = _LIMIT.match(part)
        if not found:
            raise ValueError(f"{part!r} is not EVENT:PERCENTILE=MS (percentiles: {', '.join(PERCENTILES)})")
        limits.append((found[1].strip(), found[2], float(found[3])))
    return limits


def latency_breaches(stats, limits: list[tuple[str, str, float]]) -> list[str]:
    """Locust's statistics (after any warm-up reset) against the limits, per event name over all request types."""
    reasons = []
    for event, percentile, limit in limits:
        entries = [e for (name, _), e in stats.entries.items() if name == event and e.num_requests]
        if not entries:
            reasons.append(f"latency {event}:{percentile} <= {limit:g} ms: no {event!r} events were measured")
            continue
        worst = max(e.max_response_time if percentile == "max" else
                    e.get_response_time_percentile(PERCENTILES[percentile]) for e in entries)
        if worst > limit:
            reasons.append(f"latency {event}:{percentile} {worst:g} ms > {limit:g} ms")
    return reasons


def run_breaches(config, stats, achieved_rate: float) -> list[str]:
    """The thresholds on Locust's statistics the run crossed, one line each (lost and duplicated: check.py)."""
    reasons = []
    total = stats.total
    if config.max_error_ratio is not None and total.num_requests:
        ratio = total.num_failures / total.num_requests
        if ratio > config.max_error_ratio:
            reasons.append(f"error ratio {ratio:.4f} > max_error_ratio {config.max_error_ratio:g} "
                           f"({total.num_failures} of {total.num_requests} requests failed)")
    if config.min_rate and achieved_rate < config.min_rate:
        reasons.append(f"achieved rate {achieved_rate:g}/s < min_rate {config.min_rate:g}/s")
    reasons += latency_breaches(stats, parse_latency_limits(config.latency_limit))
    return reasons
