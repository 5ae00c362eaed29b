"""`sidekiq` and `go-workers2`: Sidekiq's job JSON on Sidekiq's keys, so real Sidekiq (or go-workers2) workers run
queuestorm's jobs and their clients can feed the drain. `--queue` may name several queues, comma-separated: jobs
go to the first, the drain fetches from all.

Enqueue, as Sidekiq::Client#push (one pipeline): SADD queues Q; LPUSH queue:Q <job JSON>, where the job is
{"retry":true,"queue":Q,"class":"QueuestormJob","args":[<marker>],"jid":<24 hex>,"created_at":t,"enqueued_at":t}
and the marker is queuestorm's job body as a JSON object. hooks/sidekiq/queuestorm.rb defines QueuestormJob and the
server middleware that records completions.

sidekiq drain, as Sidekiq's BasicFetch: BRPOP over the queue keys, shuffled each fetch, 2 s timeout. No
acknowledgement: a worker hard-killed holding jobs loses them (a graceful stop pushes them back with RPUSH).

go-workers2 drain: BRPOPLPUSH queue:Q -> queue:Q:<ProcessID>:inprogress; LREM -1 on acknowledgement. A worker
restarted with the same ProcessID runs what its in-progress list holds again; another ProcessID never touches it.
"""

import json
import os
import random
import time

import redis

from ..model.errors import UsageError
from .base import (PROBE, DeclaredKey, Delivery, Protocol, glob_escape, job_outcomes, list_pages, matching_keys,
                   zset_pages)
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

JOB_CLASS = "QueuestormJob"
FETCH_TIMEOUT = 2  # BasicFetch::TIMEOUT


def job_json(queue: str, body: bytes, now: float, go_workers: bool = False) -> bytes:
    jid = os.urandom(12).hex()
    if go_workers:  # go-workers2's Msg: queue, class, args, jid, enqueued_at, at
        return b'{"queue":%s,"class":"%s","args":[%s],"jid":"%s","enqueued_at":%.7f,"at":%.7f}' % (
            json.dumps(queue).encode(), JOB_CLASS.encode(), body, jid.encode(), now, now)
    return b'{"retry":true,"queue":%s,"class":"%s","args":[%s],"jid":"%s","created_at":%.7f,"enqueued_at":%.7f}' % (
        json.dumps(queue).encode(), JOB_CLASS.encode(), body, jid.encode(), now, now)


def marker_of(job: bytes) -> bytes | None:
    """queuestorm's job body from a job's JSON (an object or a JSON string as args[0]); None when not queuestorm's."""
    try:
        args = json.loads(job).get("args") or [None]
    except (ValueError, AttributeError):
        return None
    marker = args[0]
    if isinstance(marker, dict) and "qs" in marker:
        return json.dumps(marker, separators=(",", ":")).encode()
    if isinstance(marker, str) and marker.startswith('{"qs":'):
        return marker.encode()
    return None


class SidekiqProtocol(Protocol):
    name = "sidekiq"

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.queues = [name for name in queue.split(",") if name]
        if not self.queues:
            raise UsageError(f"--queue {queue!r} names no queue (comma-separated Sidekiq queue names)")
        self.keys = [f"queue:{name}" for name in self.queues]

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey("queues", "set"), *(DeclaredKey(key, "list") for key in self.keys)]

    def probe_commands(self) -> dict[str, list[tuple]]:
        return {"enqueue": [("SADD", "queues", self.queues[0]), ("LPUSH", self.keys[0], PROBE)],
                "drain": [("BRPOP", *self.keys, 1), *(command for key in self.keys
                                                      for command in (("RPOP", key, 1), ("LLEN", key)))]}

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.sadd("queues", self.queues[0])
        pipe.lpush(self.keys[0], job_json(self.queues[0], body, time.time()))
        pipe.execute()

    def enqueue_batch(self, client, bodies):
        """Sidekiq's push_bulk: one SADD and one LPUSH of every job, pipelined."""
        now = time.time()
        pipe = client.pipeline(transaction=False)
        pipe.sadd("queues", self.queues[0])
        pipe.lpush(self.keys[0], *(job_json(self.queues[0], body, now) for body in bodies))
        return job_outcomes(pipe.execute(raise_on_error=False), len(bodies), each=0, shared=2)

    def _delivery(self, key: bytes, job: bytes) -> Delivery:
        return Delivery(marker_of(job) or job, (key, job))

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        keys = random.sample(self.keys, len(self.keys))
        reply = client.execute_command("BRPOP", *keys, min(block_seconds, FETCH_TIMEOUT))
        if reply is None:
            return []
        key, job = reply
        deliveries = [self._delivery(key, job)]
        if count > 1:
            more = client.execute_command("RPOP", key, count - 1) or []
            deliveries += [self._delivery(key, job) for job in more]
        return deliveries

    def parked(self, delivery):
        key, job = delivery.receipt
        return key.decode().removeprefix("queue:"), job

    def restore(self, pipeline, queue, parked):
        """At the end BRPOP takes from, as Sidekiq's own shutdown requeues (RPUSH)."""
        pipeline.sadd("queues", queue)
        pipeline.rpush(f"queue:{queue}", parked)

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        for key in self.keys:
            pipe.llen(key)
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Sidekiq's `schedule` and `retry` sets (shared by every queue: a marked job there is one of this run's
        whatever its queue), then the queues. Not the `dead` set: Sidekiq runs those only when someone retries them.
        A job basic fetch popped lives only in the worker's memory (queuestorm's drain reports it)."""
        for scheduled in ("schedule", "retry"):
            for jobs in zset_pages(client, scheduled):
                yield [marker_of(job) or job for job in jobs]
        for key in self.keys:
            for jobs in list_pages(client, key):
                yield [marker_of(job) or job for job in jobs]


class GoWorkers2Protocol(SidekiqProtocol):
    name = "go-workers2"
    needs_ack = True

    def declared_keys(self) -> list[DeclaredKey]:
        return [*super().declared_keys(), *(DeclaredKey(self.inprogress(key), "list") for key in self.keys)]

    def probe_commands(self) -> dict[str, list[tuple]]:
        drain = []
        for key in self.keys:
            inprogress = self.inprogress(key)
            drain += [("BRPOPLPUSH", key, inprogress, 1), ("RPOPLPUSH", key, inprogress),
                      ("LREM", inprogress, -1, PROBE), ("LMOVE", inprogress, key, "RIGHT", "RIGHT"), ("LLEN", key),
                      ("LLEN", inprogress)]
        return {"enqueue": super().probe_commands()["enqueue"], "drain": drain}

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        """go-workers2's Producer: SADD, then LPUSH, two round trips."""
        client.sadd("queues", self.queues[0])
        client.lpush(self.keys[0], job_json(self.queues[0], body, time.time(), go_workers=True))

    def enqueue_batch(self, client, bodies):
        """go-workers2 has no bulk enqueue: each job's SADD and LPUSH, pipelined."""
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for body in bodies:
            pipe.sadd("queues", self.queues[0])
            pipe.lpush(self.keys[0], job_json(self.queues[0], body, now, go_workers=True))
        return job_outcomes(pipe.execute(raise_on_error=False), len(bodies), each=2)

    def inprogress(self, key: bytes | str) -> str:
        key = key.decode() if isinstance(key, bytes) else key
        return f"{key}:{self.consumer_id}:inprogress"

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        key = random.choice(self.keys)  # go-workers2 runs one fetcher per queue
        inprogress = self.inprogress(key)
        job = client.execute_command("BRPOPLPUSH", key, inprogress, block_seconds)
        if job is None:
            return []
        jobs = [job]
        if count > 1:
            pipe = client.pipeline(transaction=False)
            for _ in range(count - 1):
                pipe.execute_command("RPOPLPUSH", key, inprogress)
            jobs += [j for j in pipe.execute() if j is not None]
        return [self._delivery(key.encode(), j) for j in jobs]

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        for delivery in deliveries:
            key, job = delivery.receipt
            pipe.lrem(self.inprogress(key), -1, job)
        if pipeline is None:
            pipe.execute()

    def start_consumer(self, client: redis.Redis) -> int:
        """go-workers2's processOldMessages: what this ProcessID held runs again (here: back to the queue's end)."""
        moved = 0
        for key in self.keys:
            while client.execute_command("LMOVE", self.inprogress(key), key, "RIGHT", "RIGHT") is not None:
                moved += 1
        return moved

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        for key in self.keys:
            pipe.llen(key)
            pipe.llen(self.inprogress(key))
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Sidekiq's, then every ProcessID's in-progress list, found by SCAN: a worker restarted under the same
        ProcessID runs it again."""
        yield from super().unfinished_bodies(client)
        for key in self.keys:
            for inprogress in matching_keys(client, glob_escape(key) + ":*:inprogress"):
                for jobs in list_pages(client, inprogress):
                    yield [marker_of(job) or job for job in jobs]
