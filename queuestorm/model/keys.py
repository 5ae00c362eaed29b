"""Every Redis key queuestorm writes, except the queue itself, lives under `queuestorm:{RUN_ID}:`.

The braces are a Redis Cluster hash tag: all keys of one run land in one slot.
"""

import re

PREFIX = "queuestorm:"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def valid_run_id(run_id: str) -> bool:
    return bool(RUN_ID_PATTERN.match(run_id))


class RunKeys:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.base = f"{PREFIX}{{{run_id}}}:"
        self.meta = self.base + "meta"
        self.producer_counter = self.base + "producers"
        self.completions = self.base + "completions"
        self.e2e = self.base + "e2e"
        self.drains = self.base + "drains"
        self.invalid = self.base + "invalid"  # jobs of this run a drain could not record, parked instead
        self.pattern = self.base + "*"
        self.producer_pattern = self.base + "p:*"

    def producer(self, producer_id: int) -> str:
        return f"{self.base}p:{producer_id}"

    def enqueued(self, producer_id: int) -> str:
        return f"{self.base}p:{producer_id}:enq"

    def maybe_enqueued(self, producer_id: int) -> str:
        return f"{self.base}p:{producer_id}:maybe"

    def completed(self, producer_id: int) -> str:
        return f"{self.base}p:{producer_id}:done"

    def duplicates(self, producer_id: int) -> str:
        return f"{self.base}p:{producer_id}:dup"

    def dyno_worker(self, producer_id: int, index: int) -> str:
        """The prefix of one dyno worker's keys (seed 003's harness): `<prefix>:tasks`, `<prefix>:flats`."""
        return f"{self.base}dyno:{producer_id}:{index}"

    @property
    def dyno_tasks_pattern(self) -> str:
        return f"{self.base}dyno:*:tasks"

    def drain(self, consumer_id: str) -> str:
        return f"{self.base}drain:{consumer_id}"


PARKING_KINDS = ("foreign", "invalid")


def foreign_jobs_key(queue: str) -> str:
    """Where a drain worker parks jobs it consumed that are not queuestorm's, so none is destroyed."""
    return f"{PREFIX}foreign:{queue}"


def invalid_jobs_key(queue: str) -> str:
    """Where a drain worker parks queuestorm jobs the ledger cannot record (a bad sequence number, an unknown run or
    producer, a marker that does not parse), so none takes its batch down with it."""
    return f"{PREFIX}invalid:{queue}"


def parking_key(kind: str, queue: str) -> str:
    return foreign_jobs_key(queue) if kind == "foreign" else invalid_jobs_key(queue)


def generator_lock_key(queue: str) -> str:
    """The lock that lets one generator at a time push onto `queue` (generator-consumer scenario)."""
    return f"{PREFIX}generator-lock:{queue}"


def default_error_queue(queue: str) -> str:
    """The generator-consumer run's error queue, when --error-queue names none."""
    return f"{queue}:errors"
