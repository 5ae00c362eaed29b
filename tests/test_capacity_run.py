"""--find-capacity as a user runs it, against systems of known capacity (small numbers: each run well under 60 s)."""

import json

from helpers import locust

DRAIN_GREENLETS, WORK_MS = 4, 80
BOUND = DRAIN_GREENLETS * 1000 / WORK_MS  # 50 jobs/s: the most the inline drain can complete


def test_the_search_finds_the_drain_fleets_capacity_and_names_it(tmp_path, redis_url, queue):
    report, html, png = tmp_path / "verdict.json", tmp_path / "report.html", tmp_path / "run.png"
    result = locust("--users", "10", "--spawn-rate", "10", "--run-time", "120s", "--find-capacity",
                    "--rate", "20", "--step-seconds", "3", "--capacity-precision", "0.1",
                    "--work-ms", str(WORK_MS), "--drain-concurrency", str(DRAIN_GREENLETS), "--queue", queue,
                    "--report", str(report), "--html", str(html), "--plot", str(png),
                    env={"REDIS_URL": redis_url}, timeout=150)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(report.read_text())
    capacity = doc["capacity"]
    assert 0.85 * BOUND <= capacity["sustainable_rate"] <= BOUND, capacity
    assert capacity["first_failing_rate"] > capacity["sustainable_rate"]
    assert capacity["limited_by"] == "drain" and capacity["limiting_factor"].startswith("drain fleet:")
    assert capacity["confirmed"] and capacity["steps"][-1]["phase"] == "confirm"
    first = capacity["steps"][0]
    assert first["target"] == 20 and first["ok"] and first["redis_cpu_pct"] is not None
    assert {"achieved", "enqueue_p50_ms", "enqueue_p99_ms", "e2e_p99_ms", "backlog_slope", "errors",
            "connections_peak"} <= first.keys()
    # the loss check covers every job of every step
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["completed"] == doc["enqueued"] > 0
    page = html.read_text()  # the Queue view's capacity charts, with the figures they draw from
    assert 'id="qs-capacity-latency"' in page and '"capacity": {"sustainable_rate": ' in page
    assert (tmp_path / "run-capacity.png").stat().st_size > 10_000
    out = result.stdout
    assert out.index("Capacity search") < out.index("Loss check")
    assert "limiting factor: drain fleet:" in out
    assert out.strip().splitlines()[-1].startswith(("verdict: PASS", "note:"))


def test_a_generator_that_cannot_issue_the_rate_is_named_not_the_queue(tmp_path, redis_url, queue):
    report = tmp_path / "verdict.json"
    result = locust("--users", "1", "--spawn-rate", "1", "--run-time", "60s", "--find-capacity", "--rate", "50000",
                    "--step-seconds", "3", "--queue", queue, "--report", str(report), env={"REDIS_URL": redis_url},
                    timeout=90)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    capacity = json.loads(report.read_text())["capacity"]
    assert capacity["limited_by"] == "generator", capacity
    assert capacity["limiting_factor"].startswith("load generator:") and "dropped" in capacity["limiting_factor"]
    assert capacity["sustainable_rate"] is None and capacity["first_failing_rate"] is None
    assert capacity["workers_needed"] > 1 and len(capacity["steps"]) == 1
    assert "limiting factor: load generator:" in result.stdout
