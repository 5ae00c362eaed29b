"""`bullmq`: BullMQ's layout under bull:<Q>:..., driven by the Lua scripts the Python `bullmq` package ships (loaded
from its commands/ folder and called, never rewritten), so real BullMQ workers run queuestorm's jobs and BullMQ's
producers can feed the drain. Needs `pip install bullmq` (for its scripts and msgpack).

Enqueue, as Queue.add: addStandardJob (job hash bull:Q:<id> with name `queuestorm`, data = the marker, opts;
LPUSH bull:Q:wait; ZADD bull:Q:marker; XADD bull:Q:events added/waiting).
Drain, as Worker: moveToActive (lock bull:Q:<id>:lock with a token, for --visibility-timeout); when it finds
nothing, BZPOPMIN bull:Q:marker, then moveToActive again; on ack moveToFinished to `completed`. The heartbeat extends
held locks (extendLocks); the stalled check (moveStalledJobsToWait, maxStalledCount 1) returns jobs whose lock
expired to the wait list once, and fails them the second time: at-least-once, one retry.
"""

import json
import time
import uuid
from pathlib import Path
from typing import NamedTuple

import redis

from ..model.errors import UsageError
from .base import PROBE, DeclaredKey, Delivery, Protocol, job_outcomes, list_pages, zset_pages
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

PREFIX = "bull"
JOB_NAME = "queuestorm"
SCRIPTS = ("addStandardJob", "moveToActive", "moveToFinished", "extendLocks", "moveStalledJobsToWait")
MAX_STALLED_COUNT = 1  # Worker's default


def _bullmq():
    try:
        import bullmq
        import msgpack
    except ImportError:
        raise UsageError("--protocol bullmq needs the bullmq package: pip install bullmq") from None
    return Path(bullmq.__file__).parent / "commands", msgpack


def _script_source(commands: Path, script: str) -> str:
    path = next(commands.glob(f"{script}-*.lua"), None)
    if path is None:
        raise UsageError(f"--protocol bullmq: the installed bullmq package has no commands/{script}-*.lua "
                         "(a bullmq version queuestorm does not know)")
    return path.read_text()


def marker_of(data: bytes | None) -> bytes | None:
    """queuestorm's job body from a job's `data` (the marker object, or the marker as a JSON string)."""
    if not data:
        return None
    if data.startswith(b'{"qs":'):
        return data
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if isinstance(value, dict) and "qs" in value:
        return json.dumps(value, separators=(",", ":")).encode()
    if isinstance(value, str) and value.startswith('{"qs":'):
        return value.encode()
    return None


class BullMQReceipt(NamedTuple):
    job_id: bytes
    token: str  # the lock's
    attempts_started: int  # the job hash's `ats` after moveToActive


class BullMQProtocol(Protocol):
    name = "bullmq"
    needs_ack = True
    min_redis_version = (5, 0)

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.base = f"{PREFIX}:{queue}:"
        self.lock_ms = int(visibility_timeout * 1000)
        commands, self._msgpack = _bullmq()
        self._sources = {script: _script_source(commands, script) for script in SCRIPTS}
        self._scripts: dict = {}
        self._held: dict[bytes, str] = {}  # job id -> lock token, for extendLocks

    def declared_keys(self) -> list[DeclaredKey]:
        types = {"wait": "list", "active": "list", "paused": "list", "prioritized": "zset", "delayed": "zset",
                 "completed": "zset", "marker": "zset", "events": "stream", "meta": "hash", "stalled": "set"}
        return [DeclaredKey(self.key(name), kind) for name, kind in types.items()]

    def probe_commands(self) -> dict[str, list[tuple]]:
        """Each script as EVALSHA over the keys it is given (the commands a script runs inside are checked only when
        it runs), and BZPOPMIN."""
        def script(*names):
            return ("EVALSHA", "0" * 40, len(names), *self.keys(*names))

        return {"enqueue": [script("wait", "paused", "meta", "id", "completed", "delayed", "active", "events",
                                   "marker")],
                "drain": [script("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused",
                                 "meta", "pc", "marker"),
                          script("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused",
                                 "meta", "pc", "completed", PROBE.decode(), "metrics:completed", "marker"),
                          script("stalled"), script("stalled", "wait", "active", "stalled-check", "meta", "paused",
                                                    "marker", "events", "repeat"),
                          ("BZPOPMIN", self.key("marker"), 1), ("LLEN", self.key("wait")), ("LLEN", self.key("active")),
                          ("ZCARD", self.key("prioritized"))]}

    def key(self, name: str) -> str:
        return self.base + name

    def keys(self, *names: str) -> list[str]:
        return [self.key(name) for name in names]

    def _script(self, client: redis.Redis, name: str):
        if not self._scripts:
            self._scripts = {script: client.register_script(text) for script, text in self._sources.items()}
        return self._scripts[name]

    def _pack(self, value) -> bytes:
        return self._msgpack.packb(value, use_bin_type=True)

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        add = self._script(client, "addStandardJob")
        now = int(time.time() * 1000)
        args = [self._pack([self.base, "", JOB_NAME, now, None, None, None, None, None]), body,
                self._pack({"attempts": 0, "delay": 0, "backoff": None}), now]
        result = add(keys=self.keys("wait", "paused", "meta", "id", "completed", "delayed", "active", "events",
                                    "marker"), args=args, client=client)
        if isinstance(result, int) and result < 0:
            raise redis.ResponseError(f"bullmq addStandardJob returned {result}")

    def enqueue_batch(self, client, bodies):
        """BullMQ's addBulk: every job's addStandardJob in one MULTI/EXEC."""
        add = self._script(client, "addStandardJob")
        now = int(time.time() * 1000)
        keys = self.keys("wait", "paused", "meta", "id", "completed", "delayed", "active", "events", "marker")
        opts = self._pack({"attempts": 0, "delay": 0, "backoff": None})
        pipe = client.pipeline(transaction=True)
        for body in bodies:
            add(keys=keys, args=[self._pack([self.base, "", JOB_NAME, now, None, None, None, None, None]), body,
                                 opts, now], client=pipe)
        replies = [redis.ResponseError(f"bullmq addStandardJob returned {r}") if isinstance(r, int) and r < 0 else r
                   for r in pipe.execute(raise_on_error=False)]
        return job_outcomes(replies, len(bodies), each=1)

    def _move_to_active(self, client: redis.Redis) -> Delivery | None:
        token = f"{uuid.uuid4()}:{self.consumer_id}"
        move = self._script(client, "moveToActive")
        raw = move(keys=self.keys("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed",
                                  "paused", "meta", "pc", "marker"),
                   args=[self.base, int(time.time() * 1000),
                         self._pack({"token": token, "lockDuration": self.lock_ms, "limiter": None})],
                   client=client)
        if not raw or not raw[0]:
            return None
        fields = dict(zip(raw[0][::2], raw[0][1::2]))
        job_id = raw[1]
        self._held[job_id] = token
        receipt = BullMQReceipt(job_id, token, int(fields.get(b"ats") or 1))
        return Delivery(marker_of(fields.get(b"data")) or b"bullmq:" + job_id, receipt)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        first = self._move_to_active(client)
        if first is None:
            client.execute_command("BZPOPMIN", self.key("marker"), block_seconds)
            first = self._move_to_active(client)
            if first is None:
                return []
        deliveries = [first]
        while len(deliveries) < count:
            more = self._move_to_active(client)
            if more is None:
                break
            deliveries.append(more)
        return deliveries

    def ack(self, client, deliveries, pipeline=None):
        finish = self._script(client, "moveToFinished")
        target = pipeline if pipeline is not None else client.pipeline(transaction=False)
        now = int(time.time() * 1000)
        for delivery in deliveries:
            job_id, token, _ = delivery.receipt
            job = job_id.decode()
            opts = self._pack({"token": token, "keepJobs": {"count": -1}, "limiter": None,
                               "lockDuration": self.lock_ms, "attempts": 0, "attemptsMade": 0,
                               "maxMetricsSize": "", "fpof": False, "cpof": False, "idof": False, "rdof": False})
            keys = self.keys("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused",
                             "meta", "pc", "completed", job, "metrics:completed", "marker")
            finish(keys=keys, args=[job, now, "returnvalue", "null", "completed", "", self.base, opts],
                   client=target)
            self._held.pop(job_id, None)
        if pipeline is None:
            target.execute()

    def parked(self, delivery):
        """A reference: the job id, its hash left as it was before moveToActive."""
        return self.queue, delivery.receipt.job_id

    def release(self, client, deliveries, pipeline):
        """moveToActive undone: out of the active list, unlocked, its attempt (ats, processedOn) taken back."""
        for delivery in deliveries:
            job_id, _, attempts_started = delivery.receipt
            job_key = self.key(job_id.decode())
            pipeline.lrem(self.key("active"), 1, job_id)
            pipeline.delete(job_key + ":lock")
            pipeline.srem(self.key("stalled"), job_id)
            if attempts_started <= 1:
                pipeline.hdel(job_key, "processedOn", "ats")
            else:
                pipeline.hincrby(job_key, "ats", -1)
            self._held.pop(job_id, None)

    def restore(self, pipeline, queue, parked):
        """Onto the wait list's consuming end, with the marker that wakes BullMQ's workers."""
        pipeline.rpush(f"{PREFIX}:{queue}:wait", parked)
        pipeline.zadd(f"{PREFIX}:{queue}:marker", {"0": 0})

    def heartbeat(self, client: redis.Redis) -> None:
        if not self._held:
            return
        held = list(self._held.items())
        extend = self._script(client, "extendLocks")
        extend(keys=[self.key("stalled")],
               args=[self.base, self._pack([token for _, token in held]),
                     self._pack([job_id.decode() for job_id, _ in held]), self.lock_ms], client=client)

    def recover_abandoned(self, client: redis.Redis) -> int:
        check = self._script(client, "moveStalledJobsToWait")
        result = check(keys=self.keys("stalled", "wait", "active", "stalled-check", "meta", "paused", "marker",
                                      "events", "repeat"),
                       args=[MAX_STALLED_COUNT, self.base, int(time.time() * 1000), self.lock_ms], client=client)
        return len(result) if isinstance(result, list) else 0

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        pipe.llen(self.key("wait"))
        pipe.llen(self.key("active"))
        pipe.zcard(self.key("prioritized"))
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Jobs BullMQ will still run: delayed, waiting for children, prioritized, paused, waiting and active (even
        one whose worker died: the stalled check returns it once). Not `failed`: BullMQ retries those only when
        someone does."""
        for ids in self._unfinished_job_ids(client):
            yield self._bodies_of_jobs(client, ids)

    def _unfinished_job_ids(self, client: redis.Redis):
        for scheduled in ("delayed", "waiting-children", "prioritized"):
            yield from zset_pages(client, self.key(scheduled))
        for waiting in ("paused", "wait", "active"):
            yield from list_pages(client, self.key(waiting))

    def _bodies_of_jobs(self, client: redis.Redis, ids: list[bytes]) -> list[bytes]:
        """As fetch() delivers them; a job whose hash is gone is skipped (it cannot run)."""
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.base.encode() + job_id, "data")
        return [marker_of(data) or b"bullmq:" + job_id
                for job_id, data in zip(ids, pipe.execute()) if data is not None]
