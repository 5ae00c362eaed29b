"""Deleting one run's keys by its own prefix. Never FLUSHALL/FLUSHDB: the server may hold other people's data."""

import redis

from ..model.keys import RunKeys


def delete_run(client: redis.Redis, run_id: str, batch: int = 500) -> int:
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=RunKeys(run_id).pattern, count=1000):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.delete(*pending)
            pending = []
    if pending:
        deleted += client.delete(*pending)
    return deleted
