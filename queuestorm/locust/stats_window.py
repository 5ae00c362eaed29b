"""Locust's statistics over a window of time, for the capacity search's steps (run/capacity_driver.py)."""

from locust.stats import calculate_response_time_percentile

from ..run.thresholds import PERCENTILES


def percentile(times: dict, fraction: float):
    """Locust's percentile of a response-time histogram (ms -> count); None when it is empty."""
    total = sum(times.values())
    return calculate_response_time_percentile(times, total, fraction) if total else None


class StatsWindow:
    """Locust's statistics between two moments: response times and failures of each event name, errors by kind."""

    percentile = staticmethod(percentile)

    def __init__(self, stats):
        self.stats = stats
        self.times = {key: dict(e.response_times) for key, e in stats.entries.items()}
        self.counts = {key: (e.num_requests, e.num_failures) for key, e in stats.entries.items()}
        self.errors = {key: e.occurrences for key, e in stats.errors.items()}

    def _since(self, key, entry):
        before = self.times.get(key, {})
        requests, failures = self.counts.get(key, (0, 0))
        if entry.num_requests < requests:  # the statistics were reset meanwhile
            before, requests, failures = {}, 0, 0
        window = {ms: n - before.get(ms, 0) for ms, n in entry.response_times.items() if n > before.get(ms, 0)}
        return window, entry.num_requests - requests, entry.num_failures - failures

    def event(self, names) -> tuple[dict, int, int]:
        """(response times, requests, failures) of these event names, over every request type."""
        times, requests, failures = {}, 0, 0
        for key, entry in self.stats.entries.items():
            if key[0] in names:
                window, n, f = self._since(key, entry)
                for ms, count in window.items():
                    times[ms] = times.get(ms, 0) + count
                requests, failures = requests + n, failures + f
        return times, requests, failures

    def error_kinds(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for key, e in self.stats.errors.items():
            n = e.occurrences - self.errors.get(key, 0)
            if n > 0:
                kind = f"{e.name}: {e.error}"
                kinds[kind] = kinds.get(kind, 0) + n
        return kinds

    def breaches(self, limits) -> list[str]:
        """--latency-limit over this window (its enqueue p99 is the step's own limit, judged apart)."""
        found = []
        for event, percentile, ms in limits:
            if event == "enqueue" and percentile == "p99":
                continue
            times, requests, _ = self.event((event,))
            if not requests:
                continue
            worst = max(times) if percentile == "max" else percentile(times, PERCENTILES[percentile])
            if worst is not None and worst > ms:
                found.append(f"latency {event}:{percentile} {worst:g} ms over {ms:g} ms")
        return found
