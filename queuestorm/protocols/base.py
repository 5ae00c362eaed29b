"""The one interface every wire protocol implements; users, drain worker and depth polling only go through it.

A Protocol instance belongs to one consumer process (`consumer_id`, stable across restarts when the user names
it) and may be shared by that process's greenlets; it holds no per-greenlet state.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, NamedTuple

import redis

from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT
from ..redis.connection import NETWORK_ERRORS


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
    sweeps_orphans: ClassVar[bool] = False  # True where sweep_orphans returns what a lost fetch reply left held

    def __init__(self, queue: str, consumer_id: str | None = None,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT):
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

    def enqueue_batch(self, client: redis.Redis, bodies: list[bytes]) -> list[BaseException | None]:
        """Put these jobs on the queue in one round trip: the library's own bulk shape where it has one, else a
        pipeline of each job's enqueue, each job as atomic as enqueue() makes it. Per job, None where the server
        confirmed it, else the error its reply carried; raises where the round trip itself failed."""
        command = self.enqueue_command
        if command(b"") is None:
            raise NotImplementedError(f"protocol {self.name!r} defines neither enqueue_command nor enqueue_batch")
        pipe = client.pipeline(transaction=False)
        for body in bodies:
            pipe.execute_command(*command(body))
        return job_outcomes(pipe.execute(raise_on_error=False), len(bodies), each=1)

    @abstractmethod
    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        """Wait up to block_seconds for a job, then take up to `count` without waiting; [] when none came."""

    def ack(self, client: redis.Redis, deliveries: list[Delivery], pipeline: redis.client.Pipeline | None = None):
        """Tell the queue these jobs are done. Writes through `pipeline` when given (the caller executes it), so the
        acknowledgement can join the ledger's MULTI/EXEC."""

    def parked(self, delivery: Delivery) -> tuple[str, bytes]:
        """(queue name, bytes) kept for a fetched job that is parked instead of run (not queuestorm's, or one the
        ledger cannot record): the job whole, or a reference to records the job keeps, enough for restore()."""
        return self.queue, delivery.body

    def release(self, client: redis.Redis, deliveries: list[Delivery], pipeline: redis.client.Pipeline) -> None:
        """Take parked jobs off whatever the fetch put them in, leaving the jobs' own records as they were (never
        marked done); writes through `pipeline`."""
        self.ack(client, deliveries, pipeline)

    def restore(self, pipeline: redis.client.Pipeline, queue: str, parked: bytes) -> None:
        """Put a parked job back on `queue`, byte for byte, where the next fetch takes it."""
        pipeline.rpush(queue, parked)

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

    @abstractmethod
    def unfinished_bodies(self, client: redis.Redis) -> Iterator[list[bytes]]:
        """Every job still waiting or held in flight anywhere in Redis for this queue (not the ones its library
        has given up on), as the bodies fetch() would deliver, in chunks of at most about CHUNK, read page by
        page. A job a drain moves between structures meanwhile may be missed or seen twice: the checker looks
        twice."""


CHUNK = 1000  # bodies per page of an unfinished-jobs scan


def job_outcomes(replies: list, count: int, each: int, shared: int = 0) -> list[BaseException | None]:
    """A batch's replies read per job: the `shared` first replies concern every job, then each job has `each`
    replies of its own, in order. Per job, the first error among its replies and the shared ones, else None."""
    common = next((r for r in replies[:shared] if isinstance(r, BaseException)), None)
    outcomes = []
    for job in range(count):
        own = replies[shared + job * each:shared + (job + 1) * each]
        outcomes.append(common or next((r for r in own if isinstance(r, BaseException)), None))
    return outcomes


def list_pages(client: redis.Redis, key: str | bytes, from_right: bool = False) -> Iterator[list[bytes]]:
    """A list, CHUNK elements a time. Page from the end consumers do not pop from, so that pops meanwhile shift no
    index: lists popped on the right (BRPOP, RPOPLPUSH) from the left, lists popped on the left from the right."""
    start = 0
    while True:
        if from_right:
            page = client.lrange(key, -start - CHUNK, -start - 1)
        else:
            page = client.lrange(key, start, start + CHUNK - 1)
        if page:
            yield page
        if len(page) < CHUNK:
            return
        start += CHUNK


def zset_pages(client: redis.Redis, key: str | bytes) -> Iterator[list[bytes]]:
    """A sorted set's members by ZSCAN: every member present from the first call to the last is returned."""
    return chunks((member for member, _ in client.zscan_iter(key, count=CHUNK)), CHUNK)


def hash_value_pages(client: redis.Redis, key: str | bytes) -> Iterator[list[bytes]]:
    return chunks((value for _, value in client.hscan_iter(key, count=CHUNK)), CHUNK)


def stream_pages(client: redis.Redis, key: str | bytes) -> Iterator[list[tuple[bytes, dict]]]:
    """A stream's entries (id, fields), pending ones included, CHUNK a time (exclusive ranges: Redis 6.2)."""
    start: bytes | str = "-"
    while True:
        entries = client.xrange(key, start, "+", count=CHUNK)
        if entries:
            yield entries
        if len(entries) < CHUNK:
            return
        start = b"(" + entries[-1][0]


def matching_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    return sorted(set(client.scan_iter(match=pattern, count=CHUNK)))


def glob_escape(text: str) -> str:
    """`text` matched literally inside a SCAN MATCH pattern."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def take_batch(client: redis.Redis, blocking: tuple, non_blocking: tuple, count: int) -> list[bytes]:
    """One take that waits (`blocking`, e.g. BLMOVE ... timeout), then up to `count - 1` more that do not
    (`non_blocking`), in one round trip; [] when the first one timed out."""
    first = client.execute_command(*blocking)
    if first is None:
        return []
    taken = [first]
    if count > 1:
        pipe = client.pipeline(transaction=False)
        for _ in range(count - 1):
            pipe.execute_command(*non_blocking)
        try:
            taken += [item for item in pipe.execute() if item is not None]
        except NETWORK_ERRORS:  # the first is taken: run it; the protocol's recovery finds what the rest moved
            pass
    return taken
