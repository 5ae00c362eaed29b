"""Seed 004 with bee-queue itself: `python -m queuestorm.beequeue_race SCENARIO --redis-url URL [--duration-s S]`.
Starts the scenario's bee-queue workers (Node, wrapped by queuestorm's Node hook) and its producer (a bee-queue Queue
counting success events), then checks the run and prints, side by side, jobs completed per the ledger, the success
events the producer received, their divergence (succededLossPercent) and the producer's memory growth."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import yaml

from ..ledger.check import check_run
from ..redis.connection import connect
from ..model.errors import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_PASS, UsageError
from ..ledger.writer import Ledger
from ..protocols import make_protocol

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "node")
FIELDS = {"queue": str, "workers": int, "concurrency": int, "chains": int, "duration_s": float,
          "stats_interval_s": float, "work_ms": float, "description": str}
READY_SECONDS = 30


def read_scenario(path: str) -> dict:
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: a mapping of {', '.join(FIELDS)}")
    for key, value in doc.items():
        if key not in FIELDS:
            raise UsageError(f"{path}: {key}: unknown field (known: {', '.join(FIELDS)})")
        try:
            doc[key] = FIELDS[key](value)
        except (TypeError, ValueError):
            raise UsageError(f"{path}: {key}: {value!r} is not a {FIELDS[key].__name__}") from None
    return {"queue": "bee-queue-189", "workers": 6, "concurrency": 20, "chains": 200, "duration_s": 60.0,
            "stats_interval_s": 3.0, "work_ms": 0.0, **doc}


def node(script: str, env: dict | None = None, **options) -> subprocess.Popen:
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "bee-queue")):
        raise UsageError(f"bee-queue is not installed: npm ci --prefix {NODE_DIR}")
    return subprocess.Popen(["node", os.path.join(NODE_DIR, script), *(f"{k}={v}" for k, v in options.items())],
                            cwd=NODE_DIR, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def wait_ready(workers: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    for worker in workers:
        line = worker.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            raise UsageError(f"a bee-queue worker did not start (said {line.strip()!r})")


def run_race(redis_url: str, scenario: dict, out=sys.stdout) -> dict:
    run_id = f"bq189-{uuid.uuid4().hex[:8]}"
    client = connect(redis_url, role="Redis")
    ledger = Ledger(client, run_id)
    ledger.create_run({"protocol": "bee-queue", "queue": scenario["queue"], "scenario": "bee-queue-189"})
    producer = ledger.register_producer()
    workers = [node("beequeue_worker.js", env={"QS_WORK_MS": str(scenario["work_ms"])}, url=redis_url,
                    queue=scenario["queue"], concurrency=scenario["concurrency"])
               for _ in range(scenario["workers"])]
    final = {}
    try:
        wait_ready(workers)
        race = node("race_producer.js", url=redis_url, queue=scenario["queue"], run=run_id,
                    producer=producer.producer_id, chains=scenario["chains"],
                    duration=int(scenario["duration_s"] * 1000), stats=int(scenario["stats_interval_s"] * 1000))
        for line in race.stdout:
            print(line.rstrip(), file=out, flush=True)
            final = json.loads(line)
        if race.wait() != 0 or not final.get("final"):
            raise UsageError("the bee-queue producer failed")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(10)
    client.hset(ledger.keys.producer(producer.producer_id), mapping={"issued": final["issued"], "closed": 1})
    verdict = check_run(client, run_id, target=client, protocol=_protocol(scenario["queue"]))
    return side_by_side(run_id, scenario, verdict, final)


def _protocol(queue: str):
    return make_protocol("bee-queue", queue)


def side_by_side(run_id: str, scenario: dict, verdict, final: dict) -> dict:
    job_events = final["numJobSucceeded"]
    completed = verdict.completed
    return {
        "run_id": run_id, "workers": scenario["workers"], "concurrency": scenario["concurrency"],
        "saved": final["numJobSaveSuccess"], "completed_per_ledger": completed,
        "queue_succeeded_events": final["numQueueSucceeded"], "job_succeeded_events": job_events,
        "numSucceededLost": completed - job_events,
        "succededLossPercent": round(100 * (completed - job_events) / completed, 2) if completed else 0.0,
        "lost": verdict.lost, "duplicated": verdict.duplicated, "unfinished": verdict.unfinished,
        "producer_rss_growth_bytes": final["rssEndBytes"] - final["rssStartBytes"],
        "producer_heap_growth_bytes": final["heapUsedEndBytes"] - final["heapUsedStartBytes"],
        "jobs_left_in_queue_map": final["jobsMapSize"], "passed": verdict.lost == 0,
    }


def render(result: dict) -> str:
    mb = 1024 * 1024
    rows = [("jobs saved by the producer", result["saved"]),
            ("jobs completed, per the ledger", result["completed_per_ledger"]),
            ("Queue 'job succeeded' events", result["queue_succeeded_events"]),
            ("job 'succeeded' events received", result["job_succeeded_events"]),
            ("success events lost (numSucceededLost)", result["numSucceededLost"]),
            ("succededLossPercent", f"{result['succededLossPercent']:.2f}"),
            ("jobs lost, per the ledger", result["lost"]),
            ("producer RSS growth", f"{result['producer_rss_growth_bytes'] / mb:+.1f} MB"),
            ("producer heap growth", f"{result['producer_heap_growth_bytes'] / mb:+.1f} MB"),
            ("jobs left in the Queue's job map", result["jobs_left_in_queue_map"])]
    width = max(len(name) for name, _ in rows)
    head = (f"seed 004 / bee-queue #189: {result['workers']} workers x {result['concurrency']} concurrency, "
            f"run {result['run_id']}: {'PASS' if result['passed'] else 'FAIL'} (no job lost)"
            if result["passed"] else f"run {result['run_id']}: FAIL, {result['lost']} job(s) lost")
    return "\n".join([head, *(f"  {name:<{width}}  {value}" for name, value in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m queuestorm.beequeue_race", description=__doc__)
    p.add_argument("scenario")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), required=os.environ.get("REDIS_URL") is None)
    p.add_argument("--duration-s", type=float, default=None, help="overrides the scenario's duration_s")
    p.add_argument("--workers", type=int, default=None, help="overrides the scenario's workers")
    p.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    try:
        scenario = read_scenario(a.scenario)
        for name in ("duration_s", "workers"):
            if getattr(a, name) is not None:
                scenario[name] = getattr(a, name)
        result = run_race(a.redis_url, scenario)
    except UsageError as e:
        print(f"beequeue_race: error: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(render(result))
    if a.json_path:
        with open(a.json_path, "w") as f:
            json.dump(result, f, indent=2)
    return EXIT_PASS if result["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
