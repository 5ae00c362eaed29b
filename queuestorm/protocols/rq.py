"""`rq`: RQ's own layout (rq 2.x/3.x), so a real RQ worker runs queuestorm's jobs and RQ's clients can feed the
drain.

Enqueue, one MULTI like Queue.enqueue: SADD rq:queues rq:queue:Q; HSET rq:job:<id> (RQ's job hash: `data` is the
zlib-compressed pickle of (func, None, [marker], {}), status `queued`, origin Q, success_callback_name); RPUSH
rq:queue:Q <id>. The function is queuestorm.hooks.rq.work and the success callback queuestorm.hooks.rq.on_success,
which records the completion in the ledger.

Drain, like rq.Worker: BLMOVE rq:queue:Q -> rq:queue:Q:intermediate (LEFT RIGHT); the job hash becomes `started`,
ZADD rq:wip:Q <id>:<execution> (score: the deadline) and LREM from the intermediate list, in one MULTI. On ack: status
`finished`, ZREM rq:wip:Q, ZADD rq:finished:Q, EXPIRE the hash after result_ttl. Crash recovery as RQ has it: a job
whose worker died stays in rq:wip:Q until its deadline, and one whose BLMOVE reply was lost stays in the intermediate
list; both then go to rq:failed:Q (RQ's registry and intermediate-queue cleanups): to queuestorm, lost.
"""

import pickle
import re
import time
import uuid
import zlib
from datetime import datetime, timezone
from typing import NamedTuple

import redis

from .base import PROBE, DeclaredKey, Delivery, Protocol, job_outcomes, list_pages, zset_pages, take_batch
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

FUNC = "queuestorm.hooks.rq.work"
ON_SUCCESS = "queuestorm.hooks.rq.on_success"
JOB_TIMEOUT = 180  # RQ's default job timeout, seconds
RESULT_TTL = 500  # RQ's default result_ttl
FAILURE_TTL = 31536000  # RQ's default failure_ttl (a year)
# The marker as JobEncoder writes it, found inside a pickled or JSON-serialized args tuple without unpickling
STARTED_FIELDS = ("status", "started_at", "last_heartbeat", "worker_name")  # what a fetch writes in a job hash
MARKER = re.compile(rb'\{(?:\\?"qs\\?":1),.*?\\?"payload\\?":\\?"x*\\?"\}')


def utcformat(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_hash(queue: str, body: bytes, now: float) -> dict:
    """The hash Queue.enqueue writes for `queuestorm.hooks.rq.work(marker)`."""
    marker = body.decode()
    data = pickle.dumps((FUNC, None, (marker,), {}), protocol=pickle.HIGHEST_PROTOCOL)
    stamp = utcformat(now)
    return {
        "created_at": stamp, "data": zlib.compress(data), "success_callback_name": ON_SUCCESS,
        "failure_callback_name": "", "stopped_callback_name": "", "started_at": "", "ended_at": "",
        "last_heartbeat": "", "worker_name": "", "group_id": "", "origin": queue,
        "description": f"{FUNC}({marker[:40]!r}...)", "enqueued_at": stamp, "timeout": JOB_TIMEOUT,
        "status": "queued",
    }


def marker_of(data: bytes | None) -> bytes | None:
    """queuestorm's job body from a job hash's `data`, or None when the job is not queuestorm's."""
    if not data:
        return None
    try:
        data = zlib.decompress(data)
    except zlib.error:
        pass
    found = MARKER.search(data)
    return found.group(0).replace(b'\\"', b'"') if found else None


class RQReceipt(NamedTuple):
    job_id: bytes
    execution: str | None  # the rq:wip:Q member; None for a job that is not queuestorm's, which the fetch left as is
    before: dict  # the job hash's fields the fetch overwrote, as they were (None: absent)


class RQProtocol(Protocol):
    name = "rq"
    needs_ack = True
    min_redis_version = (6, 2)  # BLMOVE, as RQ's worker uses on a single queue

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.queue_key = f"rq:queue:{queue}"
        self.intermediate = f"{self.queue_key}:intermediate"
        self.wip = f"rq:wip:{queue}"
        self.finished = f"rq:finished:{queue}"
        self.failed = f"rq:failed:{queue}"

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey("rq:queues", "set"), DeclaredKey(self.queue_key, "list"),
                DeclaredKey(self.intermediate, "list"), DeclaredKey(self.wip, "zset"),
                DeclaredKey(self.finished, "zset"), DeclaredKey(self.failed, "zset")]

    def probe_commands(self) -> dict[str, list[tuple]]:
        job, queue, intermediate = f"rq:job:{PROBE.decode()}", self.queue_key, self.intermediate
        return {"enqueue": [("SADD", "rq:queues", queue), ("HSET", job, "status", "queued"), ("RPUSH", queue, PROBE)],
                "drain": [
            ("BLMOVE", queue, intermediate, "LEFT", "RIGHT", 1), ("LMOVE", queue, intermediate, "LEFT", "RIGHT"),
            ("HGET", job, "data"), ("LREM", intermediate, 1, PROBE), ("HSET", job, "status", "started"),
            ("ZADD", self.wip, 0, PROBE), ("ZREM", self.wip, PROBE), ("ZADD", self.finished, 0, PROBE),
            ("EXPIRE", job, RESULT_TTL), ("ZRANGEBYSCORE", self.wip, "-inf", 0), ("LRANGE", intermediate, 0, -1),
            ("EXISTS", job), ("SET", f"{intermediate}:first_seen:probe", 0, "NX", "EX", 86400),
            ("GET", f"{intermediate}:first_seen:probe"), ("ZADD", self.failed, 0, PROBE), ("LLEN", queue),
            ("LLEN", intermediate)]}

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        job_id = str(uuid.uuid4())
        pipe = client.pipeline(transaction=True)
        pipe.sadd("rq:queues", self.queue_key)
        pipe.hset(f"rq:job:{job_id}", mapping=job_hash(self.queue, body, time.time()))
        pipe.rpush(self.queue_key, job_id)
        pipe.execute()

    def enqueue_batch(self, client, bodies):
        """RQ's enqueue_many: every job's SADD, HSET and RPUSH in one MULTI/EXEC."""
        now = time.time()
        pipe = client.pipeline(transaction=True)
        for body in bodies:
            job_id = str(uuid.uuid4())
            pipe.sadd("rq:queues", self.queue_key)
            pipe.hset(f"rq:job:{job_id}", mapping=job_hash(self.queue, body, now))
            pipe.rpush(self.queue_key, job_id)
        return job_outcomes(pipe.execute(raise_on_error=False), len(bodies), each=3)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        ids = take_batch(client, ("BLMOVE", self.queue_key, self.intermediate, "LEFT", "RIGHT", block_seconds),
                         ("LMOVE", self.queue_key, self.intermediate, "LEFT", "RIGHT"), count)
        if not ids:
            return []
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(b"rq:job:" + job_id, "data", *STARTED_FIELDS)
        rows = pipe.execute()
        now = time.time()
        pipe = client.pipeline(transaction=True)
        deliveries = []
        for job_id, (data, *before) in zip(ids, rows):
            marker = marker_of(data)
            if data is not None and marker is None:  # another application's job: untouched until parked
                deliveries.append(Delivery(job_id, RQReceipt(job_id, None, {})))
                continue
            pipe.lrem(self.intermediate, 1, job_id)
            if data is None:  # the job hash is gone (deleted, expired): RQ skips it too
                continue
            execution = f"{job_id.decode()}:{self.consumer_id}"
            pipe.hset(b"rq:job:" + job_id, mapping={"status": "started", "started_at": utcformat(now),
                                                     "last_heartbeat": utcformat(now),
                                                     "worker_name": self.consumer_id})
            pipe.zadd(self.wip, {execution: now + JOB_TIMEOUT + 60})
            deliveries.append(Delivery(marker, RQReceipt(job_id, execution, dict(zip(STARTED_FIELDS, before)))))
        pipe.execute()
        return deliveries

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        now = time.time()
        for delivery in deliveries:
            job_id, execution, _ = delivery.receipt
            key = b"rq:job:" + job_id
            pipe.hset(key, mapping={"status": "finished", "ended_at": utcformat(now)})
            pipe.expire(key, RESULT_TTL)
            pipe.zrem(self.wip, execution)
            pipe.zadd(self.finished, {job_id: now + RESULT_TTL})
        if pipeline is None:
            pipe.execute()

    def parked(self, delivery):
        """A reference: the job id, its hash left as it was."""
        return self.queue, delivery.receipt.job_id

    def release(self, client, deliveries, pipeline):
        """Out of the intermediate list (a foreign job, never started), or its start undone (a marked job)."""
        for delivery in deliveries:
            job_id, execution, before = delivery.receipt
            if execution is None:
                pipeline.lrem(self.intermediate, 1, job_id)
                continue
            pipeline.zrem(self.wip, execution)
            absent = [name for name, value in before.items() if value is None]
            if absent:
                pipeline.hdel(b"rq:job:" + job_id, *absent)
            present = {name: value for name, value in before.items() if value is not None}
            if present:
                pipeline.hset(b"rq:job:" + job_id, mapping=present)

    def restore(self, pipeline, queue, parked):
        """At the head of the queue, where the next worker's BLMOVE takes it."""
        pipeline.sadd("rq:queues", f"rq:queue:{queue}")
        pipeline.lpush(f"rq:queue:{queue}", parked)

    def recover_abandoned(self, client: redis.Redis) -> int:
        """RQ's maintenance: executions past their deadline (StartedJobRegistry.cleanup) and jobs stuck in the
        intermediate list for over a minute since first seen there (IntermediateQueue.cleanup) are failed, not
        retried. Returns 0: nothing goes back to the queue."""
        now = time.time()
        for execution in client.zrangebyscore(self.wip, "-inf", now):
            self._fail(client, execution.rsplit(b":", 1)[0], now, self.wip, execution)
        for job_id in client.lrange(self.intermediate, 0, -1):
            seen_key = f"{self.intermediate}:first_seen:{job_id.decode()}"
            if not client.exists(b"rq:job:" + job_id):
                client.lrem(self.intermediate, 1, job_id)
            elif not client.set(seen_key, now, nx=True, ex=86400) and now - float(client.get(seen_key) or now) > 60:
                self._fail(client, job_id, now)
        return 0

    def _fail(self, client: redis.Redis, job_id: bytes, now: float, wip: str | None = None, execution=None) -> None:
        pipe = client.pipeline(transaction=True)
        if wip is not None:
            pipe.zrem(wip, execution)
        pipe.lrem(self.intermediate, 1, job_id)
        pipe.hset(b"rq:job:" + job_id, mapping={"status": "failed", "ended_at": utcformat(now)})
        pipe.zadd(self.failed, {job_id: now + FAILURE_TTL})
        pipe.execute()

    def depth(self, client: redis.Redis) -> int:
        """Queued and being picked up; not rq:wip:Q, where a dead worker's jobs wait for their deadline to fail."""
        pipe = client.pipeline(transaction=False)
        pipe.llen(self.queue_key)
        pipe.llen(self.intermediate)
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Jobs RQ will still run: deferred (waiting for a dependency), ready, scheduled, queued, being picked up
        (intermediate) and started (rq:wip:Q, even one whose worker died: it is failed only at its deadline). Not
        rq:failed:Q nor rq:canceled:Q: RQ runs those only when someone requeues them."""
        for ids in self._unfinished_job_ids(client):
            yield self._bodies_of_jobs(client, ids)

    def _unfinished_job_ids(self, client: redis.Redis):
        for registry in (f"rq:deferred:{self.queue}", f"rq:ready:{self.queue}", f"rq:scheduled:{self.queue}"):
            yield from zset_pages(client, registry)
        yield from list_pages(client, self.queue_key, from_right=True)  # RPUSH on the right, popped on the left
        yield from list_pages(client, self.intermediate)
        for executions in zset_pages(client, self.wip):
            yield [execution.split(b":", 1)[0] for execution in executions]  # <job id>:<execution>; ids hold no ':'

    def _bodies_of_jobs(self, client: redis.Redis, ids: list[bytes]) -> list[bytes]:
        """As fetch() delivers them; a job whose hash is gone is skipped, as RQ's worker skips it."""
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(b"rq:job:" + job_id, "data")
        return [marker_of(data) or job_id for job_id, data in zip(ids, pipe.execute()) if data is not None]
