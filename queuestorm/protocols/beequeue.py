"""`bee-queue`: bee-queue 2.x's layout under bq:<Q>:..., so real bee-queue workers (Node) run queuestorm's jobs and a
bee-queue Queue's jobs feed the drain.

Enqueue, as Queue.createJob(data).save(): the job id from INCR bq:Q:id; HSET bq:Q:jobs <id> <job JSON>, where the
job is {"data":<marker>,"options":{"timestamp":<ms>,"stacktraces":[],...},"status":"created","progress":0}; LPUSH
bq:Q:waiting <id>. One script, atomic. A save publishes nothing: events go out when a job finishes.

Drain, as Queue.process(): BRPOPLPUSH bq:Q:waiting -> bq:Q:active; the job read from bq:Q:jobs; SREM bq:Q:stalling
<id> at once and while the job runs (bee-queue's stall prevention). On ack one MULTI: LREM active, SREM stalling,
HSET the job with status "succeeded", SADD bq:Q:succeeded, PUBLISH bq:Q:events {"id":..,"event":"succeeded"}.

Stall detection (bee-queue's checkStalledJobs, here every --visibility-timeout / 2 with stallInterval =
--visibility-timeout): SET bq:Q:stallBlock NX PX stallInterval gates it; when it passes, every id still in
bq:Q:stalling and in active goes back to waiting (LPUSH), then the active list is copied into stalling. A job whose
worker died is returned by the second check after its death, so within two stall intervals: at-least-once.
"""

import json
import time
from typing import NamedTuple

import redis

from .base import PROBE, DeclaredKey, Delivery, Protocol, job_outcomes, list_pages, zset_pages, take_batch
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

PREFIX = "bq"

# Job id from the counter, job JSON into the jobs hash, id onto the waiting list: Queue#save's three writes.
SAVE_JOB = """
local id = tostring(redis.call('INCR', KEYS[1]))
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('LPUSH', KEYS[3], id)
return id
"""

# stallBlock gates one check per interval across all workers; ids left in `stalling` since the previous check were not
# touched by a live worker and go back to waiting (only those still active); then active becomes the new stalling.
CHECK_STALLED = """
if not redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]), 'NX') then
  return {}
end
local returned = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('LREM', KEYS[4], 0, id) > 0 then
    redis.call('LPUSH', KEYS[3], id)
    returned[#returned + 1] = id
  end
end
redis.call('DEL', KEYS[2])
for _, id in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  redis.call('SADD', KEYS[2], id)
end
return returned
"""


def job_json(body: bytes, now_ms: int, retries: int | None = None, timeout_ms: int | None = None) -> bytes:
    """What bee-queue's Job#toData writes for a new job (options in the order Job sets them)."""
    options = b'"timestamp":%d,"stacktraces":[]' % now_ms
    if retries is not None:
        options += b',"retries":%d' % retries
    if timeout_ms is not None:
        options += b',"timeout":%d' % timeout_ms
    return b'{"data":%s,"options":{%s},"status":"created","progress":0}' % (body, options)


def marker_of(job: bytes | None) -> bytes | None:
    """queuestorm's job body from a bee-queue job's JSON (data is the marker object or the marker as a string)."""
    if not job:
        return None
    try:
        data = json.loads(job).get("data")
    except (ValueError, AttributeError):
        return None
    if isinstance(data, dict) and "qs" in data:
        return json.dumps(data, separators=(",", ":")).encode()
    if isinstance(data, str) and data.startswith('{"qs":'):
        return data.encode()
    return None


def finished_json(job: bytes, status: str) -> bytes:
    doc = json.loads(job)
    doc["status"] = status
    return json.dumps(doc, separators=(",", ":")).encode()


class BeeQueueReceipt(NamedTuple):
    job_id: bytes
    job: bytes  # the job's JSON as fetched


class BeeQueueProtocol(Protocol):
    name = "bee-queue"
    needs_ack = True
    min_redis_version = (2, 6)
    retries: int | None = None  # written into each job's options when set, as Job#retries(n)
    timeout_ms: int | None = None  # as Job#timeout(ms)

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.base = f"{PREFIX}:{queue}:"
        self.stall_interval_ms = max(int(visibility_timeout * 1000), 1)
        self._scripts: dict = {}
        self._held: set[bytes] = set()

    def key(self, name: str) -> str:
        return self.base + name

    def declared_keys(self) -> list[DeclaredKey]:
        types = {"id": "string", "jobs": "hash", "waiting": "list", "active": "list", "succeeded": "set",
                 "failed": "set", "stalling": "set", "stallBlock": "string", "delayed": "zset"}
        return [DeclaredKey(self.key(name), kind) for name, kind in types.items()]

    def probe_commands(self) -> dict[str, list[tuple]]:
        k = self.key
        return {"enqueue": [("EVALSHA", "0" * 40, 3, k("id"), k("jobs"), k("waiting"), PROBE)],
                "drain": [("BRPOPLPUSH", k("waiting"), k("active"), 1), ("RPOPLPUSH", k("waiting"), k("active")),
                          ("HGET", k("jobs"), PROBE), ("SREM", k("stalling"), PROBE), ("LREM", k("active"), 0, PROBE),
                          ("HSET", k("jobs"), PROBE, PROBE), ("SADD", k("succeeded"), PROBE),
                          ("PUBLISH", k("events"), PROBE), ("RPUSH", k("waiting"), PROBE),
                          ("EVALSHA", "0" * 40, 4, k("stallBlock"), k("stalling"), k("waiting"), k("active"), 1),
                          ("LLEN", k("waiting")), ("LLEN", k("active"))]}

    def _script(self, client: redis.Redis, name: str):
        if not self._scripts:
            self._scripts = {"save": client.register_script(SAVE_JOB),
                             "check_stalled": client.register_script(CHECK_STALLED)}
        return self._scripts[name]

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        job = job_json(body, int(time.time() * 1000), self.retries, self.timeout_ms)
        self._script(client, "save")(keys=[self.key("id"), self.key("jobs"), self.key("waiting")], args=[job],
                                     client=client)

    def enqueue_batch(self, client, bodies):
        """bee-queue's saveAll: every job's save script, pipelined."""
        save = self._script(client, "save")
        now = int(time.time() * 1000)
        keys = [self.key("id"), self.key("jobs"), self.key("waiting")]
        pipe = client.pipeline(transaction=False)
        for body in bodies:
            save(keys=keys, args=[job_json(body, now, self.retries, self.timeout_ms)], client=pipe)
        return job_outcomes(pipe.execute(raise_on_error=False), len(bodies), each=1)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        ids = take_batch(client, ("BRPOPLPUSH", self.key("waiting"), self.key("active"), block_seconds),
                         ("RPOPLPUSH", self.key("waiting"), self.key("active")), count)
        if not ids:
            return []
        pipe = client.pipeline(transaction=False)
        pipe.hmget(self.key("jobs"), ids)
        pipe.srem(self.key("stalling"), *ids)
        jobs = pipe.execute()[0]
        deliveries, removed = [], []
        for job_id, job in zip(ids, jobs):
            if job is None:  # removed after it was queued: bee-queue's worker skips it too
                removed.append(job_id)
                continue
            self._held.add(job_id)
            deliveries.append(Delivery(marker_of(job) or b"bee-queue:" + job_id, BeeQueueReceipt(job_id, job)))
        if removed:
            pipe = client.pipeline(transaction=False)
            for job_id in removed:
                pipe.lrem(self.key("active"), 0, job_id)
            pipe.execute()
        return deliveries

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=True)
        for delivery in deliveries:
            job_id, job = delivery.receipt
            pipe.lrem(self.key("active"), 0, job_id)
            pipe.srem(self.key("stalling"), job_id)
            pipe.hset(self.key("jobs"), job_id, finished_json(job, "succeeded"))
            pipe.sadd(self.key("succeeded"), job_id)
            pipe.publish(self.key("events"), json.dumps({"id": job_id.decode(), "event": "succeeded"},
                                                        separators=(",", ":")))
        if pipeline is None:
            pipe.execute()
        for delivery in deliveries:
            self._held.discard(delivery.receipt.job_id)

    def parked(self, delivery):
        """A reference: the job id; its record in bq:Q:jobs stays as it was (status, data, options)."""
        return self.queue, delivery.receipt.job_id

    def release(self, client, deliveries, pipeline):
        for delivery in deliveries:
            job_id = delivery.receipt.job_id
            pipeline.lrem(self.key("active"), 0, job_id)
            pipeline.srem(self.key("stalling"), job_id)
            self._held.discard(job_id)

    def restore(self, pipeline, queue, parked):
        """At the end BRPOPLPUSH takes from."""
        pipeline.rpush(f"{PREFIX}:{queue}:waiting", parked)

    def start_consumer(self, client: redis.Redis) -> int:
        """Queue#process checks for stalled jobs once before it takes its first."""
        return self.recover_abandoned(client)

    def heartbeat(self, client: redis.Redis) -> None:
        if self._held:
            client.srem(self.key("stalling"), *self._held)

    def recover_abandoned(self, client: redis.Redis) -> int:
        check = self._script(client, "check_stalled")
        returned = check(keys=[self.key("stallBlock"), self.key("stalling"), self.key("waiting"), self.key("active")],
                         args=[self.stall_interval_ms], client=client)
        return len(returned)

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        pipe.llen(self.key("waiting"))
        pipe.llen(self.key("active"))
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Delayed, waiting and active jobs (an active one whose worker died comes back through the stall check).
        Not `failed`: bee-queue runs those again only when someone calls job.retry()."""
        for ids in self._unfinished_job_ids(client):
            yield self._bodies_of_jobs(client, ids)

    def _unfinished_job_ids(self, client: redis.Redis):
        yield from zset_pages(client, self.key("delayed"))
        yield from list_pages(client, self.key("waiting"), from_right=False)
        yield from list_pages(client, self.key("active"))

    def _bodies_of_jobs(self, client: redis.Redis, ids: list[bytes]) -> list[bytes]:
        """As fetch() delivers them; a job whose record is gone is skipped (it cannot run)."""
        jobs = client.hmget(self.key("jobs"), ids)
        return [marker_of(job) or b"bee-queue:" + job_id for job_id, job in zip(ids, jobs) if job is not None]
