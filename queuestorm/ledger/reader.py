"""The only reader of the ledger's layout (model/keys.py names the keys, writer.py writes them): a run's meta, its
producers, their records and bitmaps, the end-to-end histogram and the invalid count.

"The producers" are either those the run registered (1..the counter: what samplers read each second) or, for the
checker, also any whose keys exist without a registration (a producer that wrote before it registered is still
counted)."""

import redis

from ..model.keys import RunKeys


def bitmap_int(bitmap: bytes | None, nbytes: int) -> int:
    """A bitmap's first `nbytes` as one integer, in Redis bit order (offset 0 is the most significant bit)."""
    return int.from_bytes((bitmap or b"").ljust(nbytes, b"\0"), "big")


def count_and_not(bits: bytes, minus: bytes = b"") -> int:
    """Set bits of `bits AND NOT minus` (bitmaps of different lengths align at offset 0)."""
    width = max(len(bits), len(minus))
    return (bitmap_int(bits, width) & ~bitmap_int(minus, width)).bit_count()


def registered_producer_counts(client: redis.Redis, run_ids: list[str]) -> dict[str, int]:
    """Each of these runs that exists -> how many producers it registered, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for run_id in run_ids:
        keys = RunKeys(run_id)
        pipe.exists(keys.meta)
        pipe.get(keys.producer_counter)
    replies = pipe.execute()
    return {run_id: int(counter or 0)
            for run_id, exists, counter in zip(run_ids, replies[::2], replies[1::2]) if exists}


class LedgerReader:
    def __init__(self, client: redis.Redis, run_id: str):
        self.client = client
        self.keys = RunKeys(run_id)
        self.run_id = run_id

    def exists(self) -> bool:
        return bool(self.client.exists(self.keys.meta))

    def meta(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys.meta).items()}

    def completions(self) -> int:
        return int(self.client.get(self.keys.completions) or 0)

    def invalid(self) -> int:
        return int(self.client.get(self.keys.invalid) or 0)

    def e2e_histogram(self) -> dict[int, int]:
        """Bucket -> completions (ledger/latency.py's buckets)."""
        return {int(b): int(c) for b, c in self.client.hgetall(self.keys.e2e).items()}

    def registered_producers(self) -> list[int]:
        return list(range(1, int(self.client.get(self.keys.producer_counter) or 0) + 1))

    def all_producers(self) -> list[int]:
        """The registered producers and any other whose keys exist."""
        ids = set(self.registered_producers())
        prefix_len = len(self.keys.base) + 2
        for key in self.client.scan_iter(match=self.keys.producer_pattern, count=1000):
            head = key.decode()[prefix_len:].split(":", 1)[0]
            if head.isdigit():
                ids.add(int(head))
        return sorted(ids)

    def has_producer(self, pid: int) -> bool:
        return bool(self.client.exists(self.keys.producer(pid)))

    def issued(self, pid: int) -> int:
        """Sequence numbers the producer handed out, as it last wrote them."""
        return int(self.client.hget(self.keys.producer(pid), "issued") or 0)

    def unclosed_producers(self) -> list[int]:
        pids = self.registered_producers()
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            pipe.hget(self.keys.producer(pid), "closed")
        return [pid for pid, closed in zip(pids, pipe.execute()) if closed != b"1"]

    def producer_record(self, pid: int) -> tuple[dict, tuple[int, int, int], dict]:
        """Its registration hash, the byte lengths of its enqueued / maybe-enqueued / completed bitmaps, and its
        duplicates (seq -> deliveries)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.producer(pid))
        for key in self._bitmap_keys(pid):
            pipe.strlen(key)
        pipe.hgetall(self.keys.duplicates(pid))
        info, enq_len, maybe_len, done_len, dups = pipe.execute()
        return info, (enq_len, maybe_len, done_len), dups

    def bitmap_span(self, pid: int, start: int, size: int) -> tuple[int, int, int]:
        """Bytes [start, start + size) of its enqueued, maybe-enqueued and completed bitmaps, as integers."""
        pipe = self.client.pipeline(transaction=False)
        for key in self._bitmap_keys(pid):
            pipe.getrange(key, start, start + size - 1)
        return tuple(bitmap_int(chunk, size) for chunk in pipe.execute())

    def completed_span(self, pid: int, start: int, size: int) -> int:
        return bitmap_int(self.client.getrange(self.keys.completed(pid), start, start + size - 1), size)

    def saved_and_completed(self) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """Every registered producer's enqueued and completed bitmaps, whole."""
        pids = self.registered_producers()
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            pipe.get(self.keys.enqueued(pid))
            pipe.get(self.keys.completed(pid))
        replies = pipe.execute()
        saved = {pid: replies[2 * i] or b"" for i, pid in enumerate(pids)}
        done = {pid: replies[2 * i + 1] or b"" for i, pid in enumerate(pids)}
        return saved, done

    def completed_and_duplicated(self) -> tuple[int, int]:
        """Distinct jobs completed and jobs completed more than once, over the registered producers."""
        pids = self.registered_producers()
        if not pids:
            return 0, 0
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            pipe.bitcount(self.keys.completed(pid))
            pipe.hlen(self.keys.duplicates(pid))
        replies = pipe.execute()
        return sum(replies[0::2]), sum(replies[1::2])

    def _bitmap_keys(self, pid: int) -> tuple[str, str, str]:
        return self.keys.enqueued(pid), self.keys.maybe_enqueued(pid), self.keys.completed(pid)
