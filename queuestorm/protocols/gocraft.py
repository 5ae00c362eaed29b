"""`gocraft`: gocraft/work's layout, so its Go worker pools run queuestorm's jobs and its Enqueuer feeds the drain.
`--queue` is the job name, or NAMESPACE/JOB_NAME (namespace default `work`); below, `<ns>:jobs:<name>` is the queue.

Enqueue, as Enqueuer.Enqueue: LPUSH <ns>:jobs:<name> <job JSON>, then SADD <ns>:known_jobs <name> (at most every
300 s per process, as the Enqueuer caches it). The job is Go's json.Marshal of work.Job:
{"name":<name>,"id":<24 hex>,"t":<epoch s>,"args":{<the marker's fields, keys sorted>}}.

Drain, as a worker's fetch script: if the list is not empty, <ns>:jobs:<name>:paused unset and the lock count below
<ns>:jobs:<name>:max_concurrency (when set): INCR <ns>:jobs:<name>:lock, HINCRBY ...:lock_info <pool> 1, RPOPLPUSH
into <ns>:jobs:<name>:<pool>:inprogress. gocraft polls (no blocking pop): so does fetch, every POLL_SECONDS. On ack
one MULTI: LREM the in-progress list 1 <job>, DECR lock, HINCRBY lock_info <pool> -1. The pool is the consumer id.

Heartbeat (every 5 s in gocraft): SADD <ns>:worker_pools <pool>; HSET <ns>:worker_pools:<pool> heartbeat_at <epoch s>
job_names ... . The dead-pool reaper (gocraft: 10 s after a pool starts, then every 10 min + up to 30 s of jitter;
here every --visibility-timeout / 2, a pool being dead --visibility-timeout after its last beat, gocraft's deadTime
being 10 s): for a dead pool its in-progress jobs go back to the job list (RPOPLPUSH, each releasing its lock), its
heartbeat hash is deleted; for a pool whose heartbeat hash is gone only its locks are cleaned, its in-progress jobs
stay where they are (unfinished, never run again by gocraft).
"""

import json
import os
import socket
import time

import redis

from .base import PROBE, DeclaredKey, Delivery, Protocol, glob_escape, job_outcomes, list_pages, matching_keys, zset_pages
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

DEFAULT_NAMESPACE = "work"
POLL_SECONDS = 0.05
KNOWN_JOBS_SECONDS = 300
MARKER_FIELDS = ("qs", "run", "producer", "seq", "enqueued_at", "payload")

# The worker's fetch for one job type: run only when there is a job, the type is not paused and below its cap.
FETCH = """
if redis.call('LLEN', KEYS[1]) == 0 or redis.call('GET', KEYS[3]) then
  return nil
end
local cap = tonumber(redis.call('GET', KEYS[6]))
local running = tonumber(redis.call('GET', KEYS[4]))
if cap and cap > 0 and running and running >= cap then
  return nil
end
redis.call('INCR', KEYS[4])
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
return redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
"""

# One of a dead pool's in-progress jobs back on the job list, its lock released.
REQUEUE_ONE = """
local job = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
if job then
  redis.call('DECR', KEYS[3])
  redis.call('HINCRBY', KEYS[4], ARGV[1], -1)
end
return job
"""

# What a dead pool still counts in the lock, taken off it (never below 0), and its lock_info field removed.
REAP_LOCKS = """
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
if held then
  redis.call('DECRBY', KEYS[1], held)
  redis.call('HDEL', KEYS[2], ARGV[1])
  if tonumber(redis.call('GET', KEYS[1])) < 0 then
    redis.call('SET', KEYS[1], 0)
  end
end
return held
"""


def split_queue(queue: str) -> tuple[str, str]:
    namespace, _, name = queue.rpartition("/")
    return (namespace or DEFAULT_NAMESPACE).rstrip(":"), name


def job_json(name: str, body: bytes, now: float) -> bytes:
    """Go's json.Marshal of work.Job: struct fields in order, the args map's keys sorted."""
    args = json.loads(body)
    return json.dumps({"name": name, "id": os.urandom(12).hex(), "t": int(now), "args": dict(sorted(args.items()))},
                      separators=(",", ":")).encode()


def marker_of(job: bytes) -> bytes | None:
    """queuestorm's job body from a gocraft job: its args are the marker's fields (in any order)."""
    try:
        args = json.loads(job).get("args")
    except (ValueError, AttributeError):
        return None
    if not isinstance(args, dict) or "qs" not in args:
        return None
    ordered = {name: args[name] for name in MARKER_FIELDS if name in args}
    ordered.update((name, value) for name, value in args.items() if name not in ordered)
    return json.dumps(ordered, separators=(",", ":")).encode()


class GocraftProtocol(Protocol):
    name = "gocraft"
    needs_ack = True
    min_redis_version = (2, 6)

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.namespace, self.job_name = split_queue(queue)
        self.pool_id = self.consumer_id
        self.jobs = self.key(f"jobs:{self.job_name}")
        self.inprogress = self.inprogress_of(self.pool_id)
        self._scripts: dict = {}
        self._known_until = 0.0
        self._started_at = int(time.time())

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def inprogress_of(self, pool_id: str) -> str:
        return f"{self.jobs}:{pool_id}:inprogress"

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey(self.jobs, "list"), DeclaredKey(self.inprogress, "list"),
                DeclaredKey(self.key("known_jobs"), "set"), DeclaredKey(self.key("worker_pools"), "set"),
                DeclaredKey(self.key(f"worker_pools:{self.pool_id}"), "hash"), DeclaredKey(self.jobs + ":lock", "string"),
                DeclaredKey(self.jobs + ":lock_info", "hash"), DeclaredKey(self.key("retry"), "zset"),
                DeclaredKey(self.key("scheduled"), "zset"), DeclaredKey(self.key("dead"), "zset")]

    def probe_commands(self) -> dict[str, list[tuple]]:
        lock, info, pools = self.jobs + ":lock", self.jobs + ":lock_info", self.key("worker_pools")
        return {"enqueue": [("LPUSH", self.jobs, PROBE), ("SADD", self.key("known_jobs"), self.job_name)],
                "drain": [("EVALSHA", "0" * 40, 6, self.jobs, self.inprogress, self.jobs + ":paused", lock, info,
                           self.jobs + ":max_concurrency", self.pool_id),
                          ("LREM", self.inprogress, 1, PROBE), ("DECR", lock), ("HINCRBY", info, self.pool_id, -1),
                          ("SADD", pools, self.pool_id), ("HSET", f"{pools}:{self.pool_id}", "heartbeat_at", 0),
                          ("SMEMBERS", pools), ("RPUSH", self.jobs, PROBE), ("LLEN", self.jobs)]}

    def _script(self, client: redis.Redis, name: str):
        if not self._scripts:
            self._scripts = {"fetch": client.register_script(FETCH), "requeue": client.register_script(REQUEUE_ONE),
                             "reap_locks": client.register_script(REAP_LOCKS)}
        return self._scripts[name]

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        now = time.time()
        client.lpush(self.jobs, job_json(self.job_name, body, now))
        if now >= self._known_until:
            client.sadd(self.key("known_jobs"), self.job_name)
            self._known_until = now + KNOWN_JOBS_SECONDS

    def enqueue_batch(self, client, bodies):
        """gocraft/work's enqueuer has no bulk form: each job's LPUSH, pipelined, after the known_jobs SADD when due."""
        now = time.time()
        pipe = client.pipeline(transaction=False)
        shared = int(now >= self._known_until)
        if shared:
            pipe.sadd(self.key("known_jobs"), self.job_name)
        for body in bodies:
            pipe.lpush(self.jobs, job_json(self.job_name, body, now))
        replies = pipe.execute(raise_on_error=False)
        if shared and not isinstance(replies[0], BaseException):
            self._known_until = now + KNOWN_JOBS_SECONDS
        return job_outcomes(replies, len(bodies), each=1, shared=shared)

    def _fetch_one(self, client: redis.Redis) -> bytes | None:
        keys = [self.jobs, self.inprogress, self.jobs + ":paused", self.jobs + ":lock", self.jobs + ":lock_info",
                self.jobs + ":max_concurrency"]
        return self._script(client, "fetch")(keys=keys, args=[self.pool_id], client=client)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        deadline = time.monotonic() + block_seconds
        job = self._fetch_one(client)
        while job is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            job = self._fetch_one(client)
        jobs = [job] if job is not None else []
        while jobs and len(jobs) < count:
            more = self._fetch_one(client)
            if more is None:
                break
            jobs.append(more)
        return [Delivery(marker_of(job) or job, job) for job in jobs]

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=True)
        for delivery in deliveries:
            pipe.lrem(self.inprogress, 1, delivery.receipt)
            pipe.decr(self.jobs + ":lock")
            pipe.hincrby(self.jobs + ":lock_info", self.pool_id, -1)
        if pipeline is None:
            pipe.execute()

    def parked(self, delivery):
        return self.queue, delivery.receipt

    def restore(self, pipeline, queue, parked):
        """At the end the fetch takes from (RPOPLPUSH)."""
        namespace, name = split_queue(queue)
        pipeline.rpush(f"{namespace}:jobs:{name}", parked)

    def start_consumer(self, client: redis.Redis) -> int:
        self.heartbeat(client)
        return 0

    def heartbeat(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.sadd(self.key("worker_pools"), self.pool_id)
        pipe.hset(self.key(f"worker_pools:{self.pool_id}"), mapping={
            "heartbeat_at": int(time.time()), "started_at": self._started_at, "job_names": self.job_name,
            "concurrency": 1, "worker_ids": self.pool_id, "host": socket.gethostname(), "pid": os.getpid()})
        pipe.execute()

    def stop_consumer(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.srem(self.key("worker_pools"), self.pool_id)
        pipe.delete(self.key(f"worker_pools:{self.pool_id}"))
        pipe.execute()

    def recover_abandoned(self, client: redis.Redis) -> int:
        returned = 0
        for pool in client.smembers(self.key("worker_pools")):
            pool_id = pool.decode()
            if pool_id == self.pool_id:
                continue
            heartbeat_key = self.key(f"worker_pools:{pool_id}")
            beat, names = client.hmget(heartbeat_key, "heartbeat_at", "job_names")
            if beat is not None and int(beat) + self.visibility_timeout > time.time():
                continue
            if beat is not None and names is not None:
                if self.job_name.encode() in names.split(b","):
                    returned += self._requeue_pool(client, pool_id)
                client.delete(heartbeat_key)
            client.srem(self.key("worker_pools"), pool_id)
            self._script(client, "reap_locks")(keys=[self.jobs + ":lock", self.jobs + ":lock_info"], args=[pool_id],
                                               client=client)
        return returned

    def _requeue_pool(self, client: redis.Redis, pool_id: str) -> int:
        requeue = self._script(client, "requeue")
        keys = [self.inprogress_of(pool_id), self.jobs, self.jobs + ":lock", self.jobs + ":lock_info"]
        moved = 0
        while requeue(keys=keys, args=[pool_id], client=client) is not None:
            moved += 1
        return moved

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        pipe.llen(self.jobs)
        pipe.llen(self.inprogress)
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """The retry and scheduled sets (shared by every job name: a marked job there is the run's whatever its name),
        the job list, then every pool's in-progress list (SCAN). Not `dead`: gocraft runs those only when asked."""
        for scheduled in ("retry", "scheduled"):
            for jobs in zset_pages(client, self.key(scheduled)):
                yield [marker_of(job) or job for job in jobs]
        for jobs in list_pages(client, self.jobs):
            yield [marker_of(job) or job for job in jobs]
        for inprogress in matching_keys(client, glob_escape(self.jobs) + ":*:inprogress"):
            for jobs in list_pages(client, inprogress):
                yield [marker_of(job) or job for job in jobs]
