"""The loss checker: classifies every job of a run the way Jepsen's total-queue checker does.

lost        enqueue confirmed, never completed
duplicated  completed more than once
unexpected  completed, never enqueued
recovered   enqueue outcome unknown (it raised, or its producer died before recording it), yet completed
"""

from dataclasses import asdict, dataclass, field

import redis

from .errors import UsageError
from .keys import RunKeys
from .latency import percentiles

ID_LIMIT = 100


@dataclass
class Verdict:
    run_id: str
    protocol: str
    enqueued: int = 0
    maybe_enqueued: int = 0
    not_sent: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    duplicate_deliveries: int = 0
    unexpected: int = 0
    recovered: int = 0
    lost_ids: list[str] = field(default_factory=list)
    duplicated_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    e2e_ms: dict = field(default_factory=dict)
    producers: int = 0
    dropped: int = 0
    unclosed_producers: list[int] = field(default_factory=list)
    max_duplicated: int = 0
    max_lost: int = 0
    reasons: list[str] = field(default_factory=list)
    verdict: str = "pass"
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_json(self) -> dict:
        doc = asdict(self)
        doc.update(doc.pop("extra"))
        return doc


def _int(bitmap: bytes | None, nbytes: int) -> int:
    return int.from_bytes((bitmap or b"").ljust(nbytes, b"\0"), "big")


def _offsets(bits: int, nbits: int, limit: int) -> list[int]:
    """The first `limit` set offsets in Redis bit order (offset 0 is the most significant bit)."""
    found = []
    while bits and len(found) < limit:
        top = bits.bit_length() - 1
        found.append(nbits - 1 - top)
        bits ^= 1 << top
    return found


def _producer_ids(client: redis.Redis, keys: RunKeys) -> list[int]:
    registered = int(client.get(keys.producer_counter) or 0)
    ids = set(range(1, registered + 1))
    prefix_len = len(keys.base) + 2
    for key in client.scan_iter(match=keys.producer_pattern, count=1000):
        head = key.decode()[prefix_len:].split(":", 1)[0]
        if head.isdigit():
            ids.add(int(head))
    return sorted(ids)


def check_run(client: redis.Redis, run_id: str, max_duplicated: int = 0, id_limit: int = ID_LIMIT,
              max_lost: int = 0, target=None, protocol=None) -> Verdict:
    keys = RunKeys(run_id)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
    if not meta:
        raise UsageError(f"unknown run id {run_id!r}: no ledger at {keys.meta}")
    v = Verdict(run_id=run_id, protocol=meta.get("protocol", "?"), max_duplicated=max_duplicated,
                max_lost=max_lost)
    for pid in _producer_ids(client, keys):
        _check_producer(client, keys, pid, v, id_limit)
    v.e2e_ms = percentiles({int(b): int(c) for b, c in client.hgetall(keys.e2e).items()})
    _judge(v)
    return v


CHUNK_BYTES = 128 * 1024  # a producer's bitmaps are read and classified this many bytes (1M jobs) at a time


def _check_producer(client: redis.Redis, keys: RunKeys, pid: int, v: Verdict, id_limit: int) -> None:
    bitmap_keys = (keys.enqueued(pid), keys.maybe_enqueued(pid), keys.completed(pid))
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.producer(pid))
    for key in bitmap_keys:
        pipe.strlen(key)
    pipe.hgetall(keys.duplicates(pid))
    info, enq_len, maybe_len, done_len, dups = pipe.execute()
    registered = bool(info)
    closed = info.get(b"closed") == b"1"
    issued = int(info.get(b"issued", 0)) if registered else 0
    if registered:
        v.producers += 1
        v.dropped += int(info.get(b"dropped", 0))
        v.not_sent += int(info.get(b"not_sent", 0))
        if not closed:
            v.unclosed_producers.append(pid)
    unrecorded_unknown = registered and not closed  # seqs issued but never recorded: the producer died in between

    nbytes = max(enq_len, maybe_len, done_len, (issued + 7) // 8)
    for start in range(0, nbytes, CHUNK_BYTES):
        size = min(CHUNK_BYTES, nbytes - start)
        pipe = client.pipeline(transaction=False)
        for key in bitmap_keys:
            pipe.getrange(key, start, start + size - 1)
        enq, maybe, done = (_int(chunk, size) for chunk in pipe.execute())
        nbits, first_seq = size * 8, start * 8
        unknown = maybe & ~enq
        if unrecorded_unknown:
            issued_here = min(max(issued - first_seq, 0), nbits)
            # jobs it recorded nothing for below its last flushed `issued`, and those it issued since that completed
            issued_mask = ((1 << issued_here) - 1) << (nbits - issued_here)
            unknown |= (issued_mask & ~enq) | (done & ~enq & ~issued_mask)
        lost = enq & ~done
        unexpected = done & ~enq & ~unknown
        v.enqueued += enq.bit_count()
        v.maybe_enqueued += unknown.bit_count()
        v.completed += done.bit_count()
        v.lost += lost.bit_count()
        v.unexpected += unexpected.bit_count()
        v.recovered += (done & unknown).bit_count()
        room = id_limit - len(v.lost_ids)
        if room > 0 and lost:
            v.lost_ids += [f"{pid}-{first_seq + s}" for s in _offsets(lost, nbits, room)]
        room = id_limit - len(v.unexpected_ids)
        if room > 0 and unexpected:
            v.unexpected_ids += [f"{pid}-{first_seq + s}" for s in _offsets(unexpected, nbits, room)]
    if dups:
        v.duplicated += len(dups)
        v.duplicate_deliveries += sum(int(n) for n in dups.values())
        room = id_limit - len(v.duplicated_ids)
        v.duplicated_ids += [f"{pid}-{s}" for s in sorted(int(s) for s in dups)[:max(room, 0)]]


def _judge(v: Verdict) -> None:
    if v.lost > v.max_lost:
        v.reasons.append(f"{v.lost} job(s) lost" + (f" (allowed: {v.max_lost})" if v.max_lost else ""))
    if v.unexpected:
        v.reasons.append(f"{v.unexpected} job(s) completed that were never enqueued")
    if v.duplicated > v.max_duplicated:
        v.reasons.append(f"{v.duplicated} job(s) duplicated (allowed: {v.max_duplicated})")
    if v.enqueued + v.maybe_enqueued == 0:
        v.reasons.append("no job was enqueued: nothing was proven")
    v.verdict = "fail" if v.reasons else "pass"
