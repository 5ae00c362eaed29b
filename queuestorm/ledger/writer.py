"""Independent bookkeeping of a run: a bit per job for enqueued / maybe-enqueued / completed, and duplicates.

Producers get ids from one counter, so ids are unique across processes and machines; a job is (producer, seq).
A drain records completion before it acknowledges, so a crash in between shows up as a duplicate, never a loss.
"""

import os
import socket
import sys
import threading
import time

import redis

from ..model.jobs import JobRef
from ..model.keys import RunKeys
from .latency import bucket_of
from .reader import LedgerReader


class Ledger(LedgerReader):
    """A run's ledger: its reads (LedgerReader), and the writes of the run's start and of each producer's
    registration."""

    def create_run(self, meta: dict) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self.keys.meta, "created_at", f"{time.time():.3f}")
        pipe.hset(self.keys.meta, mapping={k: str(v) for k, v in meta.items()})
        pipe.execute()

    def register_producer(self) -> "ProducerRecorder":
        producer_id = self.client.incr(self.keys.producer_counter)
        self.client.hset(
            self.keys.producer(producer_id),
            mapping={"host": socket.gethostname(), "pid": os.getpid(), "started_at": f"{time.time():.3f}",
                     "issued": 0, "closed": 0},
        )
        return ProducerRecorder(self.client, self.keys, producer_id)

    def close_producers(self, pids: list[int], *, issued: int | None = None, close_run: bool = False) -> None:
        """Mark producers closed, for those queuestorm does not run (`queuestorm run close`); `issued`: the sequence
        numbers the one producer handed out, when it did not write them."""
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            if issued is not None:
                pipe.hset(self.keys.producer(pid), "issued", max(issued, self.issued(pid)))
            pipe.hset(self.keys.producer(pid), mapping={"closed": 1, "closed_at": f"{time.time():.3f}"})
        if close_run:
            pipe.hset(self.keys.meta, "closed_at", f"{time.time():.3f}")
        pipe.execute()


class BitmapBuffer:
    """One producer's bitmap, kept whole in memory (a bit per job: 10 million jobs cost 1.25 MB) so that a flush
    writes the bytes changed since the last one with a single SETRANGE, whatever order the bits were set in.

    The producer is the only writer of its bitmaps and bits are only ever set, so writing the in-memory bytes over
    the stored ones never clears a bit another flush wrote.
    """

    GROW = 64 * 1024

    def __init__(self):
        self.bits = bytearray()
        self._lo = sys.maxsize  # dirty byte range [lo, hi)
        self._hi = 0

    def set(self, offset: int) -> None:
        i = offset >> 3
        if i >= len(self.bits):
            self.bits.extend(bytes(i + self.GROW - len(self.bits)))
        self.bits[i] |= 0x80 >> (offset & 7)  # Redis bit order: offset 0 is the first byte's most significant bit
        if i < self._lo:
            self._lo = i
        if i >= self._hi:
            self._hi = i + 1

    def set_range(self, offset: int, count: int) -> None:
        """set() of the `count` offsets from `offset` on, a byte at a time."""
        if count <= 0:
            return
        first, last = offset >> 3, (offset + count - 1) >> 3
        if last >= len(self.bits):
            self.bits.extend(bytes(last + self.GROW - len(self.bits)))
        head = 0xFF >> (offset & 7)  # offset's bit and those after it in its byte
        tail = (0xFF << (7 - ((offset + count - 1) & 7))) & 0xFF  # the last offset's bit and those before it
        if first == last:
            self.bits[first] |= head & tail
        else:
            self.bits[first] |= head
            self.bits[first + 1:last] = b"\xff" * (last - first - 1)
            self.bits[last] |= tail
        if first < self._lo:
            self._lo = first
        if last >= self._hi:
            self._hi = last + 1

    def take_dirty(self) -> tuple[int, bytes] | None:
        """(first byte, bytes) changed since the last take, and the range starts over clean; None when nothing
        changed. A set() while those bytes are on their way dirties its byte again."""
        if self._hi <= self._lo:
            return None
        lo, hi = self._lo, self._hi
        self._lo, self._hi = sys.maxsize, 0
        return lo, bytes(self.bits[lo:hi])

    def redirty(self, start: int, length: int) -> None:
        """A taken range that could not be written: the next take includes it again."""
        self._lo = min(self._lo, start)
        self._hi = max(self._hi, start + length)


class ProducerRecorder:
    """Hands out sequence numbers and buffers the outcome of each enqueue, written in batches.

    Buffered records reach Redis on flush() (every FLUSH_AT records, on a timer run by the owner, and on close()).
    `issued` is written with each flush: for a producer that never closed, sequence numbers below it that have no
    record are indeterminate (the process died between the enqueue and the flush), not lost and not unexpected.
    """

    FLUSH_AT = 2000
    # batches record ten times as fast: a flush per 2,000 records was a sixth of a batched job's client CPU, so
    # their runs flush about as often in time as single enqueues do
    RUN_FLUSH_AT = 20_000

    def __init__(self, client: redis.Redis, keys: RunKeys, producer_id: int):
        self.client = client
        self.keys = keys
        self.producer_id = producer_id
        self.issued = 0
        self.confirmed = 0
        self.unconfirmed = 0
        self.unsent = 0
        self._ok = BitmapBuffer()
        self._maybe = BitmapBuffer()
        self._unflushed = 0
        self._lock = threading.Lock()
        self.closed = False

    def next_seq(self) -> int:
        seq = self.issued
        self.issued += 1
        return seq

    def enqueued(self, seq: int) -> None:
        self.confirmed += 1
        self._ok.set(seq)
        self._unflushed += 1
        if self._unflushed >= self.FLUSH_AT:
            self.flush()

    def enqueued_run(self, first: int, count: int) -> None:
        """enqueued() of `count` consecutive sequence numbers from `first`: a batch whose every job was confirmed."""
        self.confirmed += count
        self._ok.set_range(first, count)
        self._unflushed += count
        if self._unflushed >= self.RUN_FLUSH_AT:
            self.flush()

    def maybe_enqueued(self, seq: int) -> None:
        self.unconfirmed += 1
        self._maybe.set(seq)
        self._unflushed += 1

    def not_sent(self, seq: int) -> None:
        """Nothing of the command left (connecting failed): not enqueued. It gets no bit: were it ever completed, the
        checker would call it unexpected."""
        self.unsent += 1

    def flush(self) -> None:
        with self._lock:
            self._unflushed = 0
            issued = self.issued
            pipe = self.client.pipeline(transaction=False)
            taken = []
            for bitmap, key in ((self._ok, self.keys.enqueued(self.producer_id)),
                                (self._maybe, self.keys.maybe_enqueued(self.producer_id))):
                dirty = bitmap.take_dirty()
                if dirty is not None:
                    pipe.setrange(key, *dirty)
                    taken.append((bitmap, dirty))
            pipe.hset(self.keys.producer(self.producer_id), mapping={"issued": issued, "not_sent": self.unsent})
            try:
                pipe.execute()
            except BaseException:
                for bitmap, (start, data) in taken:
                    bitmap.redirty(start, len(data))
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

    def record(self, jobs: list[tuple[JobRef, float]], ack=None, retry: bool = False) -> int:
        """Mark jobs completed (each with its end-to-end ms); returns how many had been completed before.

        One round trip for the batch. `ack(pipeline)`, when given, adds the queue's acknowledgement to the same
        MULTI/EXEC: only valid where the ledger lives on the queue's own server. `retry`: an earlier attempt at
        this same batch failed without an answer and may have been applied, so a bit found set proves nothing:
        no duplicate is counted (a real one in that batch is missed rather than a false one reported).
        """
        pipe = self.client.pipeline(transaction=ack is not None)
        by_producer: dict[tuple[str, int], list[JobRef]] = {}
        buckets: dict[tuple[str, int], int] = {}
        for job, e2e_ms in jobs:
            by_producer.setdefault((job.run_id, job.producer), []).append(job)
            bucket = (job.run_id, bucket_of(e2e_ms))
            buckets[bucket] = buckets.get(bucket, 0) + 1
        for (run_id, producer), group in by_producer.items():
            # one BITFIELD per producer sets every bit of the batch and returns each one's old value, in order
            args = ["BITFIELD", self.keys_for(run_id).completed(producer)]
            for job in group:
                args += ("SET", "u1", job.seq, 1)
            pipe.execute_command(*args)
        per_run: dict[str, int] = {}
        for (run_id, bucket), count in buckets.items():
            pipe.hincrby(self.keys_for(run_id).e2e, bucket, count)
            per_run[run_id] = per_run.get(run_id, 0) + count
        for run_id, count in per_run.items():
            pipe.incrby(self.keys_for(run_id).completions, count)
        if ack is not None:
            ack(pipe)
        old_bits = pipe.execute()[: len(by_producer)]
        if retry:
            return 0
        duplicates = [job for group, olds in zip(by_producer.values(), old_bits)
                      for job, old in zip(group, olds) if old]
        if duplicates:
            dup_pipe = self.client.pipeline(transaction=False)
            for job in duplicates:
                dup_pipe.hincrby(self.keys_for(job.run_id).duplicates(job.producer), job.seq, 1)
            dup_pipe.execute()
        return len(duplicates)
