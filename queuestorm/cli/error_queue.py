"""`queuestorm errors`: print every message of a generator-consumer run's error queue and remove it (seed 002's
-getErrors). Each message is taken with one RPOP, oldest first: two readers never print the same message."""

import os
import sys

import redis

from . import flags
from ..redis.connection import connect, describe_redis_error
from ..model.errors import EXIT_PASS, UsageError
from ..model.keys import default_error_queue


def add_parser(sub) -> None:
    p = sub.add_parser("errors", help="print the error queue's messages and remove them")
    flags.add(p, "redis_url", "Redis holding the queue")
    flags.add(p, "queue", "the job queue")
    flags.add(p, "error_queue", "the error queue", shown="QUEUE:errors")


def cmd_errors(a, out=None) -> int:
    out = out or sys.stdout
    if not a.redis_url:
        raise UsageError("--redis-url (or REDIS_URL) is required")
    if not (a.error_queue or a.queue):
        raise UsageError("--queue must not be empty")
    key = a.error_queue or default_error_queue(a.queue)
    client = connect(a.redis_url, role="Redis")
    count = 0
    try:
        while (body := client.rpop(key)) is not None:
            try:
                out.write(body.decode("utf-8", errors="backslashreplace") + "\n")
                out.flush()
            except BrokenPipeError:
                client.rpush(key, body)  # back where it was: a message is removed only once it was printed
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no second complaint at exit
                raise UsageError(f"output closed after {count} message(s); the rest stay in {key!r}") from None
            count += 1
    except redis.ResponseError as e:
        raise UsageError(f"error queue {key!r}: {describe_redis_error(e, a.redis_url)}") from None
    print(f"{count} message(s) removed from {key!r}", file=sys.stderr)
    return EXIT_PASS
