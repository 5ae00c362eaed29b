"""Seed 004: many drain workers ready the instant a job lands, and a JSON stats line every few seconds."""

import io
import json

from helpers import ROOT, locust
from queuestorm.keys import RunKeys
from queuestorm.stats_line import StatsLine

FIELDS = {"saved", "completed", "lost", "throughput", "loss_percent"}


def stats_lines(stdout: str) -> list[dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"saved"')]
    return [line for line in lines if FIELDS <= line.keys()]


def test_race_run_prints_stats_lines_and_ends_with_zero_loss(tmp_path, redis_url, queue):
    """The scenario file, shortened and scaled down to this machine."""
    report = tmp_path / "verdict.json"
    result = locust("--scenario", f"{ROOT}/scenarios/loss-race.yaml", "--users", "2", "--spawn-rate", "2",
                    "--run-time", "3s", "--rate", "200", "--queue", queue, "--drain-processes", "2",
                    "--drain-concurrency", "10", "--stats-line", "1", "--report", str(report),
                    env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(report) as f:
        doc = json.load(f)
    lines = stats_lines(result.stdout)
    periodic, final = lines[:-1], lines[-1]
    assert periodic and all("final" not in line for line in periodic)
    assert final["final"] is True and final["loss_percent"] == 0 and final["lost"] == 0
    assert final["saved"] == doc["enqueued"] and final["completed"] == doc["completed"]
    assert final["throughput"] > 0
    # the final line is read from the checked ledger; the verdict, printed last, follows it
    assert result.stdout.index('"final": true') < result.stdout.index("verdict: PASS")


def test_lost_counts_only_jobs_saved_a_settle_window_ago(r, redis_url, run_id):
    keys = RunKeys(run_id)
    r.set(keys.producer_counter, 2)
    now = [100.0]
    out = io.StringIO()
    stats = StatsLine(r, run_id, interval=3, settle_seconds=5, out=out, clock=lambda: now[0])

    for seq in range(10):
        r.setbit(keys.enqueued(1), seq, 1)
    for seq in range(6):
        r.setbit(keys.completed(1), seq, 1)
    r.setbit(keys.enqueued(2), 0, 1)
    now[0] = 103.0
    early = stats.line()
    assert early == {"saved": 11, "completed": 6, "lost": 0, "throughput": 2.0, "loss_percent": 0.0,
                     "elapsed_s": 3.0}  # nothing is a settle window old yet

    for seq in range(10, 20):  # saved after the snapshot at 103: not old enough to be lost at 108.5
        r.setbit(keys.enqueued(1), seq, 1)
    r.setbit(keys.completed(2), 0, 1)
    now[0] = 108.5
    later = stats.line()
    assert (later["saved"], later["completed"], later["lost"]) == (21, 7, 4)  # seqs 6..9 of producer 1
    assert later["loss_percent"] == round(100 * 4 / 21, 2)

    for seq in range(6, 18):
        r.setbit(keys.completed(1), seq, 1)
    stats.stop(final=True)
    final = json.loads(out.getvalue().splitlines()[-1])
    assert final["final"] is True and final["lost"] == 2 and final["completed"] == 19
