"""`queuestorm foreign`: list the jobs a drain parked instead of running (another application's jobs, kept under
queuestorm:foreign:<queue>), or with --restore put each back on its queue, byte for byte, for that library's own
worker to run. --invalid does the same for queuestorm's jobs the ledger could not record (queuestorm:invalid:<queue>).
Restoring takes the oldest first, each one moved in one MULTI (watched, so two restorers never put a job back twice)."""

import sys

import redis

from . import flags
from ..redis.connection import connect
from ..model.errors import EXIT_PASS, UsageError
from ..model.keys import parking_key
from ..protocols import Protocol, make_protocol

PREVIEW_JOBS = 5
PREVIEW_BYTES = 120


def add_parser(sub) -> None:
    p = sub.add_parser("foreign", help="list the jobs a drain parked instead of running, or put them back (--restore)",
                       description=__doc__)
    flags.add(p, "redis_url", "Redis holding the queue")
    flags.add(p, "protocol", "wire protocol of the queue")
    flags.add(p, "queue", "the queue, as the drain was given it")
    p.add_argument("--restore", action="store_true", help="put every parked job back on its queue")
    p.add_argument("--invalid", action="store_true",
                   help="act on queuestorm's own jobs the ledger could not record, not on foreign ones")


def queues_of(protocol: Protocol) -> list[str]:
    """The queue names a drain of this protocol parks under (several for a comma-separated Sidekiq/Celery list)."""
    return list(getattr(protocol, "queues", [protocol.queue]))


def restore_one(client: redis.Redis, protocol: Protocol, key: str, queue: str) -> bool:
    def move(pipe) -> bool:
        parked = pipe.lindex(key, -1)
        if parked is None:
            return False
        pipe.multi()
        protocol.restore(pipe, queue, parked)
        pipe.rpop(key)
        return True

    return client.transaction(move, key, value_from_callable=True)


def restore_all(client: redis.Redis, protocol: Protocol, kind: str) -> dict[str, int]:
    restored = {}
    for queue in queues_of(protocol):
        key = parking_key(kind, queue)
        count = 0
        while restore_one(client, protocol, key, queue):
            count += 1
        restored[key] = count
    return restored


def preview(parked: bytes) -> str:
    text = parked[:PREVIEW_BYTES].decode("utf-8", errors="backslashreplace")
    return text + ("..." if len(parked) > PREVIEW_BYTES else "")


def list_parked(client: redis.Redis, protocol: Protocol, kind: str, out) -> None:
    for queue in queues_of(protocol):
        key = parking_key(kind, queue)
        count = client.llen(key)
        print(f"{key}: {count} parked job(s)", file=out)
        for parked in reversed(client.lrange(key, -PREVIEW_JOBS, -1)):  # the oldest first
            print(f"  {preview(parked)}", file=out)
        if count > PREVIEW_JOBS:
            print(f"  ... and {count - PREVIEW_JOBS} more", file=out)


def cmd_foreign(a, out=None) -> int:
    out = out or sys.stdout
    if not a.redis_url:
        raise UsageError("--redis-url (or REDIS_URL) is required")
    protocol = make_protocol(a.protocol, a.queue)
    kind = "invalid" if a.invalid else "foreign"
    client = connect(a.redis_url, role="Redis")
    try:
        if not a.restore:
            list_parked(client, protocol, kind, out)
            return EXIT_PASS
        for key, count in restore_all(client, protocol, kind).items():
            print(f"{count} job(s) restored from {key!r}", file=out)
    except redis.ResponseError as e:
        raise UsageError(f"{kind} jobs of --queue {a.queue!r}: {e}") from None
    except ValueError as e:  # a parked entry the protocol cannot read back: it stays parked
        raise UsageError(f"{kind} jobs of --queue {a.queue!r}: {e}") from None
    return EXIT_PASS
