"""The one interface every wire protocol implements; users, drain worker and depth polling only go through it.

A Protocol instance belongs to one consumer process (`consumer_id`, stable across restarts when the user names
it) and may be shared by that process's greenlets; it holds no per-greenlet state.
"""

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import redis


PROBE = b"queuestorm-probe"  # the value in probe commands: they are queued in a MULTI and discarded, never run


class DeclaredKey(NamedTuple):
    key: str
    type: str  # as TYPE answers: list, set, zset, hash, stream, string


class Delivery(NamedTuple):
    body: bytes
    receipt: Any = None  # what ack needs to find the job again (a stream entry id)


class Protocol(ABC):
    name: ClassVar[str]
    needs_ack: ClassVar[bool] = False  # False where fetching already removed the job (BRPOP)
    min_redis_version: ClassVar[tuple[int, ...]] = (2, 0)

    def __init__(self, queue: str, consumer_id: str | None = None, visibility_timeout: float = 30.0):
        self.queue = queue
        self.consumer_id = consumer_id or "queuestorm"
        self.visibility_timeout = visibility_timeout

    def declared_keys(self) -> list[DeclaredKey]:
        """The keys with fixed names this protocol reads and writes, with their Redis types: checked before any
        load, so a key holding another type is one line, not a run of WRONGTYPE errors."""
        return []

    def probe_commands(self) -> dict[str, list[tuple]]:
        """The commands each role sends ("enqueue": the load, "drain": consumers), with real keys, for a permission
        probe (queuestorm.permissions): never executed."""
        return {}

    def enqueue_command(self, body: bytes) -> tuple | None:
        """The one command that puts a job on the queue, as execute_command arguments, sent straight on the load's
        connection (queuestorm.wire); None where enqueueing takes more than one command: then enqueue() runs."""
        return None

    def enqueue(self, client: redis.Redis, body: bytes) -> None:
        """Put one job on the queue; raises when the server did not confirm it. Override this or enqueue_command."""
        command = self.enqueue_command(body)
        if command is None:
            raise NotImplementedError(f"protocol {self.name!r} defines neither enqueue_command nor enqueue")
        client.execute_command(*command)

    @abstractmethod
    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        """Wait up to block_seconds for a job, then take up to `count` without waiting; [] when none came."""

    def ack(self, client: redis.Redis, deliveries: list[Delivery], pipeline: redis.client.Pipeline | None = None):
        """Tell the queue these jobs are done. Writes through `pipeline` when given (the caller executes it), so the
        acknowledgement can join the ledger's MULTI/EXEC."""

    def start_consumer(self, client: redis.Redis) -> int:
        """Called once when a consumer process starts: announce it, take back what a previous life of the same
        consumer id left in flight. Returns how many jobs were returned to the queue."""
        return 0

    def heartbeat(self, client: redis.Redis) -> None:
        """Called periodically (visibility_timeout / 3) while the consumer lives."""

    def stop_consumer(self, client: redis.Redis) -> None:
        """Called on a graceful stop, after the last ack."""

    def recover_abandoned(self, client: redis.Redis) -> int:
        """Return jobs held by consumers silent for longer than the visibility timeout; how many were returned."""
        return 0

    def sweep_orphans(self, client: redis.Redis, held: set[bytes], suspects: set[bytes]) -> tuple[int, set[bytes]]:
        """Return to the queue the jobs this consumer owns on the server that none of its fetches holds (a fetch
        whose reply was lost with its connection). A job is returned only if it was already unheld at the previous
        sweep (`suspects`), at least a fetch's socket timeout earlier. Returns (returned, suspects for next time)."""
        return 0, set()

    @abstractmethod
    def depth(self, client: redis.Redis) -> int:
        """Jobs waiting or in flight: what the drain fleet still has to do."""
