"""`reliable`: LPUSH; BLMOVE into a processing list owned by one consumer; LREM from it on ack. Consumers beat a
heartbeat (server time, so client clocks do not matter); a reaper returns the processing lists of consumers silent
for longer than the visibility timeout to the queue, and a consumer restarted under the same id takes its own back
at once (go-workers2's ProcessID). At-least-once: a job can run twice, never zero times."""

import redis

from .base import PROBE, DeclaredKey, Delivery, Protocol, glob_escape, list_pages, matching_keys, take_batch
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT


class ReliableProtocol(Protocol):
    name = "reliable"
    sweeps_orphans = True
    needs_ack = True
    min_redis_version = (6, 2)  # BLMOVE / LMOVE

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
        super().__init__(queue, consumer_id, visibility_timeout)
        self.consumers_key = f"queuestorm:reliable:{queue}:consumers"
        self.processing = self.processing_key(self.consumer_id)

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey(self.queue, "list"), DeclaredKey(self.consumers_key, "zset"),
                DeclaredKey(self.processing, "list")]

    def probe_commands(self) -> dict[str, list[tuple]]:
        q, processing, consumers = self.queue, self.processing, self.consumers_key
        return {"enqueue": [("LPUSH", q, PROBE)], "drain": [
            ("BLMOVE", q, processing, "RIGHT", "LEFT", 1), ("LMOVE", q, processing, "RIGHT", "LEFT"),
            ("LREM", processing, 1, PROBE), ("LMOVE", processing, q, "RIGHT", "RIGHT"), ("LRANGE", processing, 0, -1),
            ("RPUSH", q, PROBE), ("LLEN", q), ("TIME",), ("ZADD", consumers, 0, self.consumer_id),
            ("ZREM", consumers, self.consumer_id), ("ZRANGEBYSCORE", consumers, "-inf", 0),
            ("ZRANGE", consumers, 0, -1),
        ]}

    def processing_key(self, consumer_id: str) -> str:
        return f"queuestorm:reliable:{self.queue}:processing:{consumer_id}"

    def enqueue_command(self, body: bytes) -> tuple:
        return ("LPUSH", self.queue, body)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        return [Delivery(body) for body in take_batch(
            client, ("BLMOVE", self.queue, self.processing, "RIGHT", "LEFT", block_seconds),
            ("LMOVE", self.queue, self.processing, "RIGHT", "LEFT"), count)]

    def ack(self, client, deliveries, pipeline=None):
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        for delivery in deliveries:
            pipe.lrem(self.processing, 1, delivery.body)
        if pipeline is None:
            pipe.execute()

    def _server_now(self, client: redis.Redis) -> float:
        seconds, micros = client.time()
        return seconds + micros / 1e6

    def start_consumer(self, client: redis.Redis) -> int:
        self.heartbeat(client)
        return self._requeue(client, self.processing)

    def heartbeat(self, client: redis.Redis) -> None:
        client.zadd(self.consumers_key, {self.consumer_id: self._server_now(client)})

    def stop_consumer(self, client: redis.Redis) -> None:
        self._requeue(client, self.processing)  # nothing should be left; if an ack failed, the job goes back
        client.zrem(self.consumers_key, self.consumer_id)

    def recover_abandoned(self, client: redis.Redis) -> int:
        deadline = self._server_now(client) - self.visibility_timeout
        returned = 0
        for consumer in client.zrangebyscore(self.consumers_key, "-inf", deadline):
            consumer = consumer.decode()
            if consumer == self.consumer_id:
                continue
            returned += self._requeue(client, self.processing_key(consumer))
            client.zrem(self.consumers_key, consumer)
        return returned

    def sweep_orphans(self, client, held, suspects):
        unheld = {body for body in client.lrange(self.processing, 0, -1) if body not in held}
        orphans = unheld & suspects
        for body in orphans:
            pipe = client.pipeline(transaction=True)
            pipe.lrem(self.processing, 1, body)
            pipe.rpush(self.queue, body)
            pipe.execute()
        return len(orphans), unheld - orphans

    def _requeue(self, client: redis.Redis, processing: str) -> int:
        """Move a processing list back to the consuming end of the queue, oldest first, one atomic LMOVE each."""
        moved = 0
        while client.execute_command("LMOVE", processing, self.queue, "RIGHT", "RIGHT") is not None:
            moved += 1
        return moved

    def depth(self, client: redis.Redis) -> int:
        consumers = client.zrange(self.consumers_key, 0, -1)
        pipe = client.pipeline(transaction=False)
        pipe.llen(self.queue)
        for consumer in consumers:
            pipe.llen(self.processing_key(consumer.decode()))
        return sum(pipe.execute())

    def unfinished_bodies(self, client: redis.Redis):
        """The queue, then every processing list: those SCAN finds (a consumer gone from the zset leaves its list
        behind) and those the consumers zset names."""
        yield from list_pages(client, self.queue)
        for processing in self._processing_lists(client):
            yield from list_pages(client, processing)

    def _processing_lists(self, client: redis.Redis) -> list[bytes]:
        found = set(matching_keys(client, glob_escape(self.processing_key("")) + "*"))
        found.update(self.processing_key(c.decode()).encode() for c in client.zrange(self.consumers_key, 0, -1))
        return sorted(found)
