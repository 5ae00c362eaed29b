"""Seed 004 with bee-queue itself, shortened: real bee-queue workers (Node) under a bee-queue Queue counting its jobs'
success events; the verdict puts jobs completed per the ledger beside the events received and the producer's
memory growth, and no job is lost."""

import json
import sys

from helpers import ROOT, run_cli
from nodejs import needs_node

SCENARIO = f"{ROOT}/scenarios/node/bee-queue-189.yaml"


@needs_node
def test_the_bee_queue_race_shows_events_beside_the_ledger(redis_url, tmp_path):
    report = tmp_path / "race.json"
    result = run_cli(sys.executable, "-m", "queuestorm.beequeue_race", SCENARIO, "--redis-url", redis_url,
                     "--duration-s", "4", "--workers", "2", "--json", str(report), timeout=60)
    assert result.returncode == 0, result.stderr
    doc = json.loads(report.read_text())
    assert doc["lost"] == 0 and doc["unfinished"] == 0 and doc["saved"] > 100
    assert doc["completed_per_ledger"] == doc["saved"] == doc["queue_succeeded_events"]
    assert doc["job_succeeded_events"] <= doc["completed_per_ledger"]
    assert doc["numSucceededLost"] == doc["completed_per_ledger"] - doc["job_succeeded_events"]
    stats = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert stats and "succededLossPercent" in stats[0] and stats[-1]["final"]
    for row in ("jobs completed, per the ledger", "job 'succeeded' events received", "succededLossPercent",
                "producer RSS growth"):
        assert row in result.stdout
