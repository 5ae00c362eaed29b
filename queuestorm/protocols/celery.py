"""`celery`: Celery's task protocol 2 on kombu's Redis transport, so a real Celery worker runs queuestorm's tasks
and Celery's clients can feed the drain.

Enqueue, as apply_async/send_task: the first time, SADD _kombu.binding.Q and _kombu.binding_permanent.Q
"Q\\x06\\x16\\x06\\x16Q" (the queue's binding); then LPUSH Q <kombu message JSON>: headers (task, id, root_id,
retries, timelimit, argsrepr...), properties (delivery_tag, delivery_info {exchange "", routing_key Q},
body_encoding base64) and body = base64(JSON [[marker], {}, {callbacks...}]). The task is `queuestorm.work`, which
queuestorm.hooks.celery registers together with the task_success handler that records completions.

Drain, as kombu's worker side: BRPOP over the queues of `--queue a,b` (a worker's -Q; rotated each time, 1 s
timeout); ZADD unacked_index <tag> <now> and HSET unacked <tag> [message, exchange, routing_key]; on ack ZREM + HDEL. Crash recovery as kombu has it: a message whose worker died
stays in `unacked` until it is older than the visibility timeout (kombu's default: 3600 s; here
--visibility-timeout), then any worker's restore_visible pushes it back onto Q marked redelivered (under the
`unacked_mutex` lock): at-least-once, after a long wait by default.
"""

import base64
import json
import os
import time
import uuid
from typing import NamedTuple

import redis

from ..model.errors import UsageError
from .base import PROBE, DeclaredKey, Delivery, Protocol, hash_value_pages, job_outcomes, list_pages
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT

TASK = "queuestorm.work"
SEP = "\x06\x16"
UNACKED, UNACKED_INDEX, UNACKED_MUTEX = "unacked", "unacked_index", "unacked_mutex"
MUTEX_SECONDS = 300
BRPOP_TIMEOUT = 1
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis transport: priority 0 is the queue's own list
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def message_json(queue: str, body: bytes, origin: str) -> bytes:
    task_id = str(uuid.uuid4())
    marker = body.decode()
    payload = json.dumps([[marker], {}, EMBED]).encode()
    return json.dumps({
        "body": base64.b64encode(payload).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": TASK, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
            "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": repr([marker]), "kwargsrepr": "{}", "origin": origin, "ignore_result": None,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0, "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }, separators=(", ", ": ")).encode()


def marker_of(message: dict) -> bytes | None:
    """queuestorm's job body from a kombu message carrying a protocol-2 task; None when not queuestorm's."""
    try:
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        marker = args[0]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return marker.encode() if isinstance(marker, str) and marker.startswith('{"qs":') else None


class CeleryReceipt(NamedTuple):
    tag: str | None  # the delivery tag under which `unacked` holds the message; None when it is not a kombu message
    queue: str
    raw: bytes


def queue_of(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def _message(raw: bytes) -> dict | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class CeleryProtocol(Protocol):
    name = "celery"
    needs_ack = True
    min_redis_version = (6, 2)  # ZRANGE ... BYSCORE REV, as kombu's restore_visible

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.queues = [name for name in queue.split(",") if name]  # a worker's -Q a,b; tasks go to the first
        if not self.queues:
            raise UsageError(f"--queue {queue!r} names no queue (comma-separated Celery queue names)")
        self._next = 0
        self._declared = False
        self._origin = f"queuestorm{os.getpid()}@{os.uname().nodename}"

    def declared_keys(self) -> list[DeclaredKey]:
        keys = [DeclaredKey(UNACKED, "hash"), DeclaredKey(UNACKED_INDEX, "zset"), DeclaredKey(UNACKED_MUTEX, "string")]
        for queue in self.queues:
            keys += [DeclaredKey(queue, "list"), DeclaredKey(f"_kombu.binding.{queue}", "set"),
                     DeclaredKey(f"_kombu.binding_permanent.{queue}", "set")]
        return keys

    def probe_commands(self) -> dict[str, list[tuple]]:
        first = self.queues[0]
        drain = [("BRPOP", *self.queues, 1), ("ZADD", UNACKED_INDEX, 0, PROBE), ("HSET", UNACKED, PROBE, PROBE),
                 ("ZREM", UNACKED_INDEX, PROBE), ("HDEL", UNACKED, PROBE), ("ZCARD", UNACKED_INDEX),
                 ("SET", UNACKED_MUTEX, PROBE, "NX", "EX", MUTEX_SECONDS), ("GET", UNACKED_MUTEX),
                 ("DEL", UNACKED_MUTEX),
                 ("ZRANGE", UNACKED_INDEX, 0, 0, "BYSCORE", "REV"), ("HGET", UNACKED, PROBE)]
        for queue in self.queues:
            drain += [("RPOP", queue, 1), ("RPUSH", queue, PROBE), ("LLEN", queue)]
        enqueue = [("SADD", f"_kombu.binding.{first}", PROBE), ("SADD", f"_kombu.binding_permanent.{first}", PROBE),
                   ("LPUSH", first, PROBE)]
        return {"enqueue": enqueue, "drain": drain}

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        queue = self.queues[0]
        message = message_json(queue, body, self._origin)
        if self._declared:
            client.lpush(queue, message)
            return
        binding = f"{queue}{SEP}{SEP}{queue}"
        pipe = client.pipeline(transaction=False)
        pipe.sadd(f"_kombu.binding.{queue}", binding)
        pipe.sadd(f"_kombu.binding_permanent.{queue}", binding)
        pipe.lpush(queue, message)
        pipe.execute()
        self._declared = True

    def enqueue_batch(self, client, bodies):
        """kombu publishes one message at a time: each job's LPUSH, pipelined, after the bindings until declared."""
        queue = self.queues[0]
        pipe = client.pipeline(transaction=False)
        shared = 0 if self._declared else 2
        if shared:
            binding = f"{queue}{SEP}{SEP}{queue}"
            pipe.sadd(f"_kombu.binding.{queue}", binding)
            pipe.sadd(f"_kombu.binding_permanent.{queue}", binding)
        for body in bodies:
            pipe.lpush(queue, message_json(queue, body, self._origin))
        replies = pipe.execute(raise_on_error=False)
        self._declared = self._declared or not any(isinstance(r, BaseException) for r in replies[:shared])
        return job_outcomes(replies, len(bodies), each=1, shared=shared)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        self._next = (self._next + 1) % len(self.queues)  # kombu rotates the queue order between BRPOPs
        order = self.queues[self._next:] + self.queues[:self._next]
        reply = client.execute_command("BRPOP", *order, min(block_seconds, BRPOP_TIMEOUT))
        if reply is None:
            return []
        raws = [reply[1]]
        if count > 1:
            raws += client.execute_command("RPOP", reply[0], count - 1) or []
        now = time.time()
        pipe = client.pipeline(transaction=False)
        deliveries = []
        for raw in raws:
            message = _message(raw)
            if message is None:  # not a kombu message: nothing to track in unacked, parked as it came
                deliveries.append(Delivery(raw, CeleryReceipt(None, queue_of(reply[0]), raw)))
                continue
            properties = message.setdefault("properties", {})
            tag = properties.get("delivery_tag") or str(uuid.uuid4())
            info = properties.get("delivery_info") or {}
            pipe.zadd(UNACKED_INDEX, {tag: now})
            pipe.hset(UNACKED, tag, json.dumps([message, info.get("exchange", ""), info.get("routing_key", "")]))
            deliveries.append(Delivery(marker_of(message) or raw, CeleryReceipt(tag, queue_of(reply[0]), raw)))
        pipe.execute()
        return deliveries

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        for delivery in deliveries:
            if delivery.receipt.tag is not None:
                pipe.zrem(UNACKED_INDEX, delivery.receipt.tag)
                pipe.hdel(UNACKED, delivery.receipt.tag)
        if pipeline is None:
            pipe.execute()

    def parked(self, delivery):
        """The message as it was on the queue, before the fetch tracked it in `unacked`."""
        return delivery.receipt.queue, delivery.receipt.raw

    def recover_abandoned(self, client: redis.Redis) -> int:
        """kombu's restore_visible: unacked messages older than the visibility timeout go back onto their queue."""
        token = uuid.uuid4().hex
        if not client.set(UNACKED_MUTEX, token, nx=True, ex=MUTEX_SECONDS):
            return 0
        restored = 0
        try:
            ceil = time.time() - self.visibility_timeout
            for tag in client.zrange(UNACKED_INDEX, ceil, 0, desc=True, byscore=True):
                restored += client.transaction(lambda pipe: self._restore(pipe, tag), UNACKED, value_from_callable=True)
        finally:
            if client.get(UNACKED_MUTEX) == token.encode():
                client.delete(UNACKED_MUTEX)
        return restored

    def _restore(self, pipe, tag) -> int:
        raw = pipe.hget(UNACKED, tag)
        pipe.multi()
        pipe.zrem(UNACKED_INDEX, tag)
        pipe.hdel(UNACKED, tag)
        if not raw:
            return 0
        message, _exchange, routing_key = json.loads(raw)
        message.get("headers", {})["redelivered"] = True
        message["properties"].setdefault("delivery_info", {})["redelivered"] = True
        pipe.rpush(routing_key or self.queues[0], json.dumps(message))
        return 1

    def depth(self, client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
        pipe.zcard(UNACKED_INDEX)
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """Every queue of `--queue a,b` with its priority lists (kombu's `Q\\x06\\x16<priority>`), then the `unacked`
        hash (shared by every queue: a marked message there is one of this run's whatever its queue), where a
        message a worker holds stays until acknowledged or restored. A message whose BRPOP reply came back lives only
        in that worker's memory until it is written to `unacked` (queuestorm's drain reports it)."""
        for queue in self.queues:
            for key in [queue] + [f"{queue}{SEP}{priority}" for priority in PRIORITY_STEPS[1:]]:
                for raws in list_pages(client, key):
                    yield [_body_of_message(raw) for raw in raws]
        for entries in hash_value_pages(client, UNACKED):
            yield [_body_of_unacked(entry) for entry in entries]


def _body_of_message(raw: bytes) -> bytes:
    """As fetch() delivers it: the marker of a queuestorm task, the raw message otherwise."""
    try:
        return marker_of(json.loads(raw)) or raw
    except (ValueError, AttributeError):
        return raw


def _body_of_unacked(entry: bytes) -> bytes:
    """An `unacked` value: [message, exchange, routing_key]."""
    try:
        return marker_of(json.loads(entry)[0]) or entry
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return entry
