"""`list`: LPUSH onto the key named by the queue, BRPOP to fetch (seed 002's format). At-most-once: a consumer
that dies holding jobs loses them, which is exactly what this protocol exists to show."""

import redis

from ..redis.connection import NETWORK_ERRORS
from .base import PROBE, DeclaredKey, Delivery, Protocol, list_pages


class ListProtocol(Protocol):
    name = "list"
    _rpop_count = True  # RPOP with a count needs Redis 6.2; older servers get one job per fetch

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey(self.queue, "list")]

    def probe_commands(self) -> dict[str, list[tuple]]:
        q = self.queue
        return {"enqueue": [("LPUSH", q, PROBE)], "drain": [("BRPOP", q, 1), ("RPOP", q, 1), ("LLEN", q)]}

    def enqueue_command(self, body: bytes) -> tuple:
        return ("LPUSH", self.queue, body)

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        reply = client.execute_command("BRPOP", self.queue, block_seconds)
        if reply is None:
            return []
        deliveries = [Delivery(reply[1])]
        if count > 1 and self._rpop_count:
            try:
                more = client.execute_command("RPOP", self.queue, count - 1)
            except redis.ResponseError:
                self._rpop_count = False
                more = None
            except NETWORK_ERRORS:  # the job BRPOP took is ours to run: never dropped for the extra take
                more = None
            if more:
                deliveries += [Delivery(body) for body in more]
        return deliveries

    def depth(self, client: redis.Redis) -> int:
        return client.llen(self.queue)

    def unfinished_bodies(self, client: redis.Redis):
        yield from list_pages(client, self.queue)
