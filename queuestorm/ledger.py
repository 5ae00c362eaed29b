"""Independent bookkeeping of a run: a bit per job for enqueued / maybe-enqueued / completed, and duplicates.

Producers get ids from one counter, so ids are unique across processes and machines; a job is (producer, seq).
A drain records completion before it acknowledges, so a crash in between shows up as a duplicate, never a loss.
"""

import os
import socket
import threading
import time

import redis

from .jobs import JobRef
from .keys import RunKeys
from .latency import bucket_of


class Ledger:
    def __init__(self, client: redis.Redis, run_id: str):
        self.client = client
        self.keys = RunKeys(run_id)
        self.run_id = run_id

    def create_run(self, meta: dict) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self.keys.meta, "created_at", f"{time.time():.3f}")
        pipe.hset(self.keys.meta, mapping={k: str(v) for k, v in meta.items()})
        pipe.execute()

    def exists(self) -> bool:
        return bool(self.client.exists(self.keys.meta))

    def meta(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys.meta).items()}

    def completions(self) -> int:
        return int(self.client.get(self.keys.completions) or 0)

    def register_producer(self) -> "ProducerRecorder":
        producer_id = self.client.incr(self.keys.producer_counter)
        self.client.hset(
            self.keys.producer(producer_id),
            mapping={"host": socket.gethostname(), "pid": os.getpid(), "started_at": f"{time.time():.3f}",
                     "issued": 0, "closed": 0},
        )
        return ProducerRecorder(self.client, self.keys, producer_id)

    def unclosed_producers(self) -> list[int]:
        count = int(self.client.get(self.keys.producer_counter) or 0)
        pipe = self.client.pipeline(transaction=False)
        for pid in range(1, count + 1):
            pipe.hget(self.keys.producer(pid), "closed")
        return [pid for pid, closed in zip(range(1, count + 1), pipe.execute()) if closed != b"1"]


def _bitfield_set_args(key: str, offsets: list[int]) -> list:
    args: list = ["BITFIELD", key]
    for offset in offsets:
        args += ("SET", "u1", offset, 1)
    return args


class ProducerRecorder:
    """Hands out sequence numbers and buffers the outcome of each enqueue, written in batches.

    Buffered records reach Redis on flush() (every FLUSH_AT records, on a timer run by the owner, and on close()).
    `issued` is written with each flush: for a producer that never closed, sequence numbers below it that have no
    record are indeterminate (the process died between the enqueue and the flush), not lost and not unexpected.
    """

    FLUSH_AT = 2000

    def __init__(self, client: redis.Redis, keys: RunKeys, producer_id: int):
        self.client = client
        self.keys = keys
        self.producer_id = producer_id
        self.issued = 0
        self.confirmed = 0
        self.unconfirmed = 0
        self._ok: list[int] = []
        self._maybe: list[int] = []
        self._lock = threading.Lock()
        self.closed = False

    def next_seq(self) -> int:
        seq = self.issued
        self.issued += 1
        return seq

    def enqueued(self, seq: int) -> None:
        self.confirmed += 1
        self._ok.append(seq)
        if len(self._ok) >= self.FLUSH_AT:
            self.flush()

    def maybe_enqueued(self, seq: int) -> None:
        self.unconfirmed += 1
        self._maybe.append(seq)

    def flush(self) -> None:
        with self._lock:
            ok, self._ok = self._ok, []
            maybe, self._maybe = self._maybe, []
            issued = self.issued
            pipe = self.client.pipeline(transaction=False)
            if ok:
                pipe.execute_command(*_bitfield_set_args(self.keys.enqueued(self.producer_id), ok))
            if maybe:
                pipe.execute_command(*_bitfield_set_args(self.keys.maybe_enqueued(self.producer_id), maybe))
            pipe.hset(self.keys.producer(self.producer_id), "issued", issued)
            try:
                pipe.execute()
            except BaseException:
                self._ok[:0] = ok
                self._maybe[:0] = maybe
                raise

    def close(self, dropped: int = 0) -> None:
        """Flush everything and mark the producer closed; `dropped` counts enqueues the pacer could not issue on time."""
        if self.closed:
            return
        self.flush()
        self.client.hset(self.keys.producer(self.producer_id), mapping={"closed": 1, "dropped": dropped})
        self.closed = True


class CompletionRecorder:
    """Records completions for whatever run each job names; used by drain workers, which need no run id."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self._keys: dict[str, RunKeys] = {}

    def keys_for(self, run_id: str) -> RunKeys:
        keys = self._keys.get(run_id)
        if keys is None:
            keys = self._keys[run_id] = RunKeys(run_id)
        return keys

    def record(self, jobs: list[tuple[JobRef, float]], ack=None) -> int:
        """Mark jobs completed (each with its end-to-end ms); returns how many had been completed before.

        One round trip for the batch. `ack(pipeline)`, when given, adds the queue's acknowledgement to the same
        MULTI/EXEC: only valid where the ledger lives on the queue's own server.
        """
        pipe = self.client.pipeline(transaction=ack is not None)
        buckets: dict[tuple[str, int], int] = {}
        for job, e2e_ms in jobs:
            keys = self.keys_for(job.run_id)
            pipe.setbit(keys.completed(job.producer), job.seq, 1)
            bucket = (job.run_id, bucket_of(e2e_ms))
            buckets[bucket] = buckets.get(bucket, 0) + 1
        per_run: dict[str, int] = {}
        for (run_id, bucket), count in buckets.items():
            pipe.hincrby(self.keys_for(run_id).e2e, bucket, count)
            per_run[run_id] = per_run.get(run_id, 0) + count
        for run_id, count in per_run.items():
            pipe.incrby(self.keys_for(run_id).completions, count)
        if ack is not None:
            ack(pipe)
        old_bits = pipe.execute()[: len(jobs)]
        duplicates = [job for (job, _), old in zip(jobs, old_bits) if old]
        if duplicates:
            dup_pipe = self.client.pipeline(transaction=False)
            for job in duplicates:
                dup_pipe.hincrby(self.keys_for(job.run_id).duplicates(job.producer), job.seq, 1)
            dup_pipe.execute()
        return len(duplicates)
