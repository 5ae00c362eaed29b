"""The capacity search's logic on synthetic steps: which rate comes next, trends, and each limiting factor."""

import pytest

from queuestorm.capacity import (CapacitySearch, StepFigures, StepLimits, grows, judge_step, render_capacity, slope,
                                 workers_needed)
from queuestorm.report import grid

LIMITS = StepLimits(e2e_p99_ms=500, enqueue_p99_ms=100, max_error_ratio=0.01)


def healthy(target, **changes) -> StepFigures:
    figures = StepFigures(target=target, achieved=target, seconds=7.0, requests=int(7 * target), enqueue_p50_ms=1,
                          enqueue_p99_ms=5, e2e_p99_ms=40, backlog_slope=0.3, backlog_end=4, connections_peak=12,
                          generator_cpu_pct=30)
    for name, value in changes.items():
        setattr(figures, name, value)
    return figures


def queue_of_capacity(capacity):
    """A simulated queue: a step above `capacity` grows its backlog at the excess."""
    def step(target):
        return healthy(target, backlog_slope=max(0.0, target - capacity))
    return step


def search_against(system, first, **kw):
    search = CapacitySearch(first, **kw)
    while (rate := search.next_rate()) is not None:
        figures = system(rate)
        search.record(figures, judge_step(figures, LIMITS))
    return search


@pytest.mark.parametrize("capacity, first", [(100, 10), (95, 40), (3000, 100), (12.5, 100), (1000, 1000)])
def test_bisection_brackets_the_capacity_within_the_precision_and_confirms(capacity, first):
    search = search_against(queue_of_capacity(capacity), first, precision=0.05)
    result = search.result()
    sustainable, failing = result["sustainable_rate"], result["first_failing_rate"]
    # a step up to max(MIN_SLOPE, 3 % of its rate) above the capacity is within noise and holds
    assert capacity * 0.95 * 0.97 <= sustainable <= capacity * 1.03 + 2
    assert sustainable < failing and (failing - sustainable) / failing <= 0.05
    assert result["confirmed"] and search.steps[-1].figures.phase == "confirm"
    assert search.steps[-1].figures.target == sustainable
    assert result["limited_by"] == "drain" and result["limiting_factor"].startswith("drain fleet: backlog grows at")
    assert len(result["steps"]) == len(search.steps) < 20


def test_a_confirmation_that_fails_lowers_the_rate_reported():
    held_once = {75.0}

    def flaky(target):  # 75/s held once, fails when held again
        if target in held_once:
            held_once.discard(target)
            return healthy(target)
        return healthy(target, backlog_slope=target - 72 if target > 72 else 0)

    result = search_against(flaky, 25, precision=0.05).result()
    assert result["sustainable_rate"] < 75 and result["first_failing_rate"] <= 75 and result["confirmed"]


def test_a_queue_failing_from_the_first_step_comes_down_geometrically():
    search = search_against(queue_of_capacity(30), 400)
    targets = [s.figures.target for s in search.steps]
    assert targets[:4] == [400, 200, 100, 50]
    assert 27 <= search.result()["sustainable_rate"] <= 33


def test_no_failure_up_to_the_maximum_rate():
    result = search_against(queue_of_capacity(10_000), 100, max_rate=1000).result()
    assert [s["target"] for s in result["steps"]] == [100, 200, 400, 800, 1000]
    assert result["sustainable_rate"] == 1000 and result["first_failing_rate"] is None
    assert result["limiting_factor"] == "none found up to 1,000/s"


def test_the_generator_out_of_breath_stops_the_search_and_is_never_the_queues_limit():
    def weak_generator(target):
        return healthy(target, achieved=min(target, 700.0), processes=2, dropped=int(max(0, target - 700) * 7))

    search = search_against(weak_generator, 200)
    result = search.result()
    assert [s["target"] for s in result["steps"]] == [200, 400, 800]
    assert result["sustainable_rate"] == 400 and result["first_failing_rate"] is None
    assert result["limited_by"] == "generator" and result["workers_needed"] == 3  # 800 / (700 / 2)
    assert result["limiting_factor"].startswith("load generator: 12 % dropped (issued 700/s of 800/s")


@pytest.mark.parametrize("samples, expected", [
    ([(0, 5), (1, 5), (2, 5), (3, 5)], 0.0),
    ([(0, 0), (1, 100), (2, 200), (3, 300)], 100.0),
    ([(0.0, 10), (0.5, 9), (1.0, 8)], -2.0),
    ([(0, 1), (1, 2)], None),
    ([(1, 1), (1, 2), (1, 3)], None),
])
def test_slope_is_least_squares_over_every_sample(samples, expected):
    assert slope(samples) == (pytest.approx(expected) if expected is not None else None)


def test_a_trend_is_growth_beyond_noise_not_one_high_sample():
    spike = [(t / 4, 3) for t in range(28)]
    spike[-1] = (spike[-1][0], 60)  # one sample at the end: a burst the drain takes next
    assert not grows(slope(spike[:-4] + [(7.0, 3)]), 100)
    assert slope(spike) < 6 and not grows(slope(spike), 200)
    steady_growth = [(t / 4, 3 + 20 * t / 4) for t in range(28)]
    assert grows(slope(steady_growth), 100)
    assert not grows(2.5, 100) and grows(3.5, 100)  # 3 % of the target
    assert not grows(1.9, 10) and grows(2.1, 10)  # at least MIN_SLOPE jobs/s
    assert not grows(None, 100)
    assert not grows(4.0, 100, seconds=2) and grows(4.0, 100, seconds=3)  # at least MIN_GROWTH jobs


@pytest.mark.parametrize("changes, kind, words", [
    ({"errors": {"enqueue: ConnectionError('max number of clients reached')": 12}, "connections_peak": 40},
     "max_clients", "redis: max clients at 40 connections (12 refused)"),
    ({"rejected_connections": 3, "connections_peak": 20}, "max_clients", "redis: max clients at 20 connections"),
    ({"failures": 30, "requests": 1000, "errors": {"enqueue: ConnectionError('EOF')": 30}}, "errors",
     "redis: 3.0 % of enqueues failed (enqueue: ConnectionError('EOF'))"),
    ({"enqueue_p99_ms": 180}, "redis_latency", "redis: enqueue p99 180 ms over 100 ms"),
    ({"achieved": 1400.0, "dropped": 4200, "generator_cpu_pct": 99}, "generator",
     "load generator: 30 % dropped (issued 1,400/s of 2,000/s, CPU 99 %); about 2 Locust worker processes needed"),
    ({"achieved": 1400.0, "enqueue_p99_ms": 180, "generator_cpu_pct": 99}, "generator", "load generator: 30 %"),
    ({"achieved": 1000.0, "generator_cpu_pct": 20}, "generator", "more users needed"),
    ({"latency_breaches": ["latency task:p95 80 ms over 50 ms"]}, "latency", "latency task:p95 80 ms over 50 ms"),
    ({"unaccounted_slope": 150.0}, "lost", "jobs lost: 150/s neither queued nor completed"),
    ({"backlog_slope": 2000.0}, "drain", "drain fleet: backlog grows at 2,000/s"),
    ({"e2e_p99_ms": 720.0}, "e2e", "drain fleet: e2e p99 720 ms over 500 ms"),
])
def test_each_limiting_factor_in_words(changes, kind, words):
    judgement = judge_step(healthy(2000, **changes), LIMITS)
    assert not judgement.ok and judgement.kind == kind
    assert words in judgement.factor, judgement.factor


def test_a_healthy_step_holds():
    assert judge_step(healthy(2000), LIMITS).ok


def test_workers_needed_is_the_target_over_what_each_process_achieved():
    assert workers_needed(healthy(10_000, achieved=3000.0, processes=2)) == 7
    assert workers_needed(healthy(100, achieved=0.0)) == 0


def test_the_table_lists_every_step_and_the_result():
    search = search_against(queue_of_capacity(100), 40)
    text = render_capacity(search.result(), grid)
    assert text.startswith("Capacity search")
    assert text.count("| grow ") + text.count("|    grow ") >= 1
    assert "sustainable rate:" in text and "first failing rate:" in text
    assert "limiting factor: drain fleet: backlog grows at" in text
    assert len([line for line in text.splitlines() if line.startswith("| ") and "step" not in line]) == \
        len(search.steps)


def test_the_first_step_stops_waiting_once_the_producers_rate_stops_growing():
    from queuestorm.run.capacity_driver import _plateau

    assert not _plateau([100, 200, 400])  # users still spawning
    assert not _plateau([0, 0, 0])  # nothing issued yet
    assert not _plateau([500, 500])  # not seconds enough to say
    assert _plateau([100, 3000, 3100, 3050])  # a generator at its limit: the step names it, not 30 s later
    assert not _plateau([3000, 3100, 4000])
