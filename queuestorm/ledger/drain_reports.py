"""Where drain processes publish their vitals and throughput, so the Locust master can show the whole fleet.

A drain worker needs no run id: it publishes under each run whose jobs it completed recently, as the hash
`queuestorm:{RUN}:drain:<consumer id>` (each value JSON-encoded), listed in the set `queuestorm:{RUN}:drains`.
Both expire REPORT_TTL after the last write; `queuestorm clean` removes them with the rest of the run.

Per run, besides vitals and throughput: `completed` (that run's jobs this process completed), `held` (that run's
jobs it fetched and has not acknowledged yet: in flight, not lost) and `held_ids` (their "producer-seq" ids),
`invalid` (jobs it could not record, parked), `updated_at`, and `final` (true once the process exited: held is 0).
"""

import json
import time

import redis

from ..model.keys import RunKeys

REPORT_TTL = 24 * 3600


def publish(client: redis.Redis, consumer_id: str, per_run: dict[str, dict]) -> None:
    """One round trip: `per_run` maps a run id to this process's report for that run."""
    pipe = client.pipeline(transaction=False)
    for run_id, report in per_run.items():
        keys = RunKeys(run_id)
        key = keys.drain(consumer_id)
        fields = {name: json.dumps(value) for name, value in report.items()}
        fields["updated_at"] = json.dumps(round(time.time(), 3))
        pipe.hset(key, mapping=fields)
        pipe.expire(key, REPORT_TTL)
        pipe.sadd(keys.drains, consumer_id)
        pipe.expire(keys.drains, REPORT_TTL)
    pipe.execute()


def read(client: redis.Redis, run_id: str) -> list[dict]:
    keys = RunKeys(run_id)
    consumers = sorted(c.decode() for c in client.smembers(keys.drains))
    pipe = client.pipeline(transaction=False)
    for consumer_id in consumers:
        pipe.hgetall(keys.drain(consumer_id))
    reports = []
    for consumer_id, raw in zip(consumers, pipe.execute()):
        if raw:
            report = {k.decode(): json.loads(v) for k, v in raw.items()}
            report.setdefault("name", consumer_id)
            reports.append(report)
    return reports


FRESH_SECONDS = 10.0


def is_fresh(report: dict, now: float | None = None) -> bool:
    """Written within FRESH_SECONDS: a drain that stopped writing is dead or cut off, and holds nothing for sure."""
    updated = report.get("updated_at")
    return updated is not None and (now or time.time()) - updated <= FRESH_SECONDS
