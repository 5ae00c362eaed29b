"""Thresholds at their exact boundaries: latency limits, the error ratio, the minimum rate, the scenario form."""

from types import SimpleNamespace

import pytest

from queuestorm.thresholds import latency_breaches, latency_option, parse_latency_limits, run_breaches


class Entry:
    """One Locust stats entry whose percentiles are given: {0.95: 40, ...}; `max` is its max_response_time."""

    def __init__(self, percentiles: dict, max_ms: float, requests: int = 1, failures: int = 0):
        self.num_requests = requests
        self.num_failures = failures
        self.max_response_time = max_ms
        self._percentiles = percentiles

    def get_response_time_percentile(self, fraction):
        return self._percentiles[fraction]


def stats_of(entries: dict, total: Entry | None = None):
    return SimpleNamespace(entries=entries, total=total or Entry({}, 0, requests=0))


def test_limits_parse_every_part_and_refuse_a_malformed_one_naming_the_percentiles():
    assert parse_latency_limits(" enqueue:p95=50, drain e2e:max=1.5 ,") == [
        ("enqueue", "p95", 50.0), ("drain e2e", "max", 1.5)]
    assert parse_latency_limits("") == [] and parse_latency_limits(None) == []
    with pytest.raises(ValueError) as raised:
        parse_latency_limits("enqueue:p95=50,enqueue:p42=1")
    assert str(raised.value) == ("'enqueue:p42=1' is not EVENT:PERCENTILE=MS "
                                 "(percentiles: p50, p90, p95, p99, p999, max)")


def test_a_percentile_limit_reads_that_percentile_and_max_reads_the_maximum():
    entries = {("enqueue", "redis"): Entry({0.95: 40, 0.99: 70}, max_ms=90)}
    assert latency_breaches(stats_of(entries), parse_latency_limits("enqueue:p95=40")) == []
    assert latency_breaches(stats_of(entries), parse_latency_limits("enqueue:p99=69")) == [
        "latency enqueue:p99 70 ms > 69 ms"]
    assert latency_breaches(stats_of(entries), parse_latency_limits("enqueue:max=89")) == [
        "latency enqueue:max 90 ms > 89 ms"]


def test_the_worst_request_type_counts_and_every_limit_is_judged_after_an_unmeasured_one():
    entries = {("enqueue", "a"): Entry({0.5: 10}, 10), ("enqueue", "b"): Entry({0.5: 30}, 30),
               ("idle", "a"): Entry({0.5: 99}, 99, requests=0)}
    assert latency_breaches(stats_of(entries), parse_latency_limits("idle:p50=1,enqueue:p50=20")) == [
        "latency idle:p50 <= 1 ms: no 'idle' events were measured", "latency enqueue:p50 30 ms > 20 ms"]


def config(**limits):
    return SimpleNamespace(**{"max_error_ratio": None, "min_rate": 0, "latency_limit": "", **limits})


@pytest.mark.parametrize("failures, breached", [(1, False), (2, True)])
def test_the_error_ratio_at_its_exact_boundary(failures, breached):
    stats = stats_of({}, total=Entry({}, 0, requests=100, failures=failures))
    reasons = run_breaches(config(max_error_ratio=0.01), stats, 50)
    assert reasons == (["error ratio 0.0200 > max_error_ratio 0.01 (2 of 100 requests failed)"] if breached else [])


def test_no_error_ratio_limit_and_no_requests_are_no_breach():
    failing = stats_of({}, total=Entry({}, 0, requests=10, failures=10))
    assert run_breaches(config(), failing, 50) == []
    assert run_breaches(config(max_error_ratio=0.0), stats_of({}), 50) == []


@pytest.mark.parametrize("achieved, breached", [(100.0, False), (99.5, True)])
def test_the_minimum_rate_at_its_exact_boundary(achieved, breached):
    reasons = run_breaches(config(min_rate=100), stats_of({}), achieved)
    assert reasons == (["achieved rate 99.5/s < min_rate 100/s"] if breached else [])


def test_run_breaches_include_the_latency_limits_after_the_others():
    stats = stats_of({("enqueue", "redis"): Entry({0.95: 60}, 60)},
                     total=Entry({}, 0, requests=10, failures=5))
    assert run_breaches(config(max_error_ratio=0.1, min_rate=10, latency_limit="enqueue:p95=50"), stats, 1) == [
        "error ratio 0.5000 > max_error_ratio 0.1 (5 of 10 requests failed)", "achieved rate 1/s < min_rate 10/s",
        "latency enqueue:p95 60 ms > 50 ms"]


def test_a_scenario_s_latency_mapping_becomes_the_option_and_is_checked():
    assert latency_option({"enqueue": {"p95": 50, "max": 200}, "drain": {"p99": 9.5}}) == (
        "enqueue:p95=50,enqueue:max=200,drain:p99=9.5")
    with pytest.raises(TypeError) as raised:
        latency_option(["enqueue"])
    assert str(raised.value) == "must map event names to {p95: ms, ...}"
    with pytest.raises(TypeError, match=r"enqueue: must map percentiles \(p50, p90, p95, p99, p999, max\) to ms"):
        latency_option({"enqueue": 50})
    with pytest.raises(ValueError, match="p42"):
        latency_option({"enqueue": {"p42": 50}})
