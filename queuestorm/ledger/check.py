"""The loss checker: classifies every job of a run the way Jepsen's total-queue checker does.

lost        enqueue confirmed, never completed, and (when the Redis under test is looked up) nowhere in it
unfinished  enqueue confirmed or unknown, not completed, still queued or held by a consumer or a live drain
duplicated  completed more than once
unexpected  completed, never enqueued
recovered   enqueue outcome unknown (it raised, or its producer died before recording it), yet completed

Looking up: the jobs not completed at the first read of the ledger are searched for in the Redis under test
(Protocol.unfinished_bodies) and in what live drains say they hold; then the completed bitmaps are read again. A
drain may be moving jobs meanwhile (queue to processing list to completed), so while jobs are still missing the
search is repeated, until a pass changes nothing (MAX_PASSES at most): a job is lost only if it evaded two passes
at least. Memory: three bitmaps per producer with jobs not completed; bodies are read a chunk at a time.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import redis

from . import drain_reports
from ..model.errors import UsageError
from ..model.jobs import decode
from ..model.keys import RunKeys
from .latency import percentiles
from .reader import LedgerReader
from ..protocols.base import list_pages, matching_keys
from ..model.verdict import judge

if TYPE_CHECKING:
    from ..protocols.base import Protocol

ID_LIMIT = 100
MAX_PASSES = 4
LIVE_REPORT_SECONDS = 10.0  # a drain report not final and updated this recently speaks for the jobs it holds
REPORT_POLL_SECONDS = 0.1


@dataclass
class Verdict:
    run_id: str
    protocol: str
    enqueued: int = 0
    maybe_enqueued: int = 0
    not_sent: int = 0
    completed: int = 0
    lost: int = 0
    unfinished: int = 0
    duplicated: int = 0
    duplicate_deliveries: int = 0
    unexpected: int = 0
    recovered: int = 0
    invalid: int = 0  # jobs of this run a drain could not record: parked whole in queuestorm:invalid:<queue>
    lost_ids: list[str] = field(default_factory=list)
    unfinished_ids: list[str] = field(default_factory=list)
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


def _offsets(bits: int, nbits: int, limit: int) -> list[int]:
    """The first `limit` set offsets in Redis bit order (offset 0 is the most significant bit)."""
    found = []
    while bits and len(found) < limit:
        top = bits.bit_length() - 1
        found.append(nbits - 1 - top)
        bits ^= 1 << top
    return found


def check_run(client: redis.Redis, run_id: str, max_duplicated: int = 0, id_limit: int = ID_LIMIT,
              max_lost: int = 0, target: redis.Redis | None = None, protocol: "Protocol | None" = None) -> Verdict:
    """`client` holds the ledger. With `target` (the Redis under test) and `protocol` (a Protocol of the run's
    queue), jobs still queued or held there are unfinished, not lost; without them, every confirmed job not
    completed is lost."""
    ledger = LedgerReader(client, run_id)
    meta = ledger.meta()
    if not meta:
        raise UsageError(f"unknown run id {run_id!r}: no ledger at {ledger.keys.meta}")
    v = Verdict(run_id=run_id, protocol=meta.get("protocol", "?"), max_duplicated=max_duplicated,
                max_lost=max_lost)
    open_jobs = [jobs for pid in ledger.all_producers()
                 if (jobs := _check_producer(ledger, pid, v, id_limit)) is not None]
    if open_jobs and target is not None and protocol is not None:
        _look_up_unfinished(ledger, target, protocol, open_jobs, v)
    for jobs in open_jobs:
        _classify_open(jobs, v, id_limit)
    v.e2e_ms = percentiles(ledger.e2e_histogram())
    v.invalid = ledger.invalid()
    judge(v)
    return v


CHUNK_BYTES = 128 * 1024  # a producer's bitmaps are read and classified this many bytes (1M jobs) at a time


def _spans(nbytes: int):
    for start in range(0, nbytes, CHUNK_BYTES):
        yield start, min(CHUNK_BYTES, nbytes - start)


@dataclass
class OpenJobs:
    """One producer's jobs not seen completed, a bit per seq: `confirmed` ones are lost unless `found` in Redis,
    `unknown` ones (enqueue outcome unknown) are only ever unfinished."""
    pid: int
    confirmed: bytearray
    unknown: bytearray
    found: bytearray

    @classmethod
    def sized(cls, pid: int, nbytes: int) -> "OpenJobs":
        return cls(pid, bytearray(nbytes), bytearray(nbytes), bytearray(nbytes))

    def store(self, start: int, size: int, confirmed: int, unknown: int) -> None:
        self.confirmed[start:start + size] = confirmed.to_bytes(size, "big")
        self.unknown[start:start + size] = unknown.to_bytes(size, "big")

    def read(self, start: int, size: int) -> tuple[int, int, int]:
        return tuple(int.from_bytes(bits[start:start + size], "big")
                     for bits in (self.confirmed, self.unknown, self.found))

    def mark_found(self, seq: int) -> None:
        byte = seq >> 3
        if 0 <= byte < len(self.found):
            self.found[byte] |= 0x80 >> (seq & 7)

    def missing(self) -> int:
        total = 0
        for start, size in _spans(len(self.found)):
            confirmed, unknown, found = self.read(start, size)
            total += ((confirmed | unknown) & ~found).bit_count()
        return total


def _check_producer(ledger: LedgerReader, pid: int, v: Verdict, id_limit: int) -> OpenJobs | None:
    """Counts what the ledger alone decides; returns the jobs not completed (None when there are none)."""
    info, (enq_len, maybe_len, done_len), dups = ledger.producer_record(pid)
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
    open_jobs = None
    for start, size in _spans(nbytes):
        enq, maybe, done = ledger.bitmap_span(pid, start, size)
        nbits, first_seq = size * 8, start * 8
        unknown = maybe & ~enq
        if unrecorded_unknown:
            issued_here = min(max(issued - first_seq, 0), nbits)
            # jobs it recorded nothing for below its last flushed `issued`, and those it issued since that completed
            issued_mask = ((1 << issued_here) - 1) << (nbits - issued_here)
            unknown |= (issued_mask & ~enq) | (done & ~enq & ~issued_mask)
        unexpected = done & ~enq & ~unknown
        v.enqueued += enq.bit_count()
        v.maybe_enqueued += unknown.bit_count()
        v.completed += done.bit_count()
        v.unexpected += unexpected.bit_count()
        v.recovered += (done & unknown).bit_count()
        if (enq | unknown) & ~done:
            open_jobs = open_jobs or OpenJobs.sized(pid, nbytes)
            open_jobs.store(start, size, enq & ~done, unknown & ~done)
        room = id_limit - len(v.unexpected_ids)
        if room > 0 and unexpected:
            v.unexpected_ids += [f"{pid}-{first_seq + s}" for s in _offsets(unexpected, nbits, room)]
    if dups:
        v.duplicated += len(dups)
        v.duplicate_deliveries += sum(int(n) for n in dups.values())
        room = id_limit - len(v.duplicated_ids)
        v.duplicated_ids += [f"{pid}-{s}" for s in sorted(int(s) for s in dups)[:max(room, 0)]]
    return open_jobs


def _classify_open(jobs: OpenJobs, v: Verdict, id_limit: int) -> None:
    for start, size in _spans(len(jobs.found)):
        confirmed, unknown, found = jobs.read(start, size)
        lost = confirmed & ~found
        unfinished = (confirmed | unknown) & found
        v.lost += lost.bit_count()
        v.unfinished += unfinished.bit_count()
        nbits, first_seq = size * 8, start * 8
        for bits, ids in ((lost, v.lost_ids), (unfinished, v.unfinished_ids)):
            room = id_limit - len(ids)
            if room > 0 and bits:
                ids += [f"{jobs.pid}-{first_seq + s}" for s in _offsets(bits, nbits, room)]


def _waiting_bodies(target: redis.Redis, keys: RunKeys, protocol: "Protocol"):
    """Every place a job of the run may wait: the protocol's structures, and the dyno workers' task lists (seed 003's
    harness sends its tasks to a list per worker under the run's prefix)."""
    yield from protocol.unfinished_bodies(target)
    for key in matching_keys(target, keys.dyno_tasks_pattern):
        yield from list_pages(target, key)


def _look_up_unfinished(ledger: LedgerReader, target: redis.Redis, protocol: "Protocol", open_jobs: list[OpenJobs],
                        v: Verdict) -> None:
    by_pid = {jobs.pid: jobs for jobs in open_jobs}
    reports: dict = {}
    missing = sum(jobs.missing() for jobs in open_jobs)
    for pass_no in range(MAX_PASSES):
        _mark_queued(_waiting_bodies(target, ledger.keys, protocol), ledger.run_id, by_pid)
        reports = _live_reports_after(ledger.client, ledger.run_id, reports)
        _mark_held(reports.values(), by_pid)
        for jobs in open_jobs:
            _drop_completed(ledger, jobs, v)
        still_missing = sum(jobs.missing() for jobs in open_jobs)
        if still_missing == 0 or (pass_no > 0 and still_missing == missing):
            return
        missing = still_missing


def _mark_queued(chunks, run_id: str, by_pid: dict[int, OpenJobs]) -> None:
    for bodies in chunks:
        for body in bodies:
            job = decode(body)
            if job is not None and job.run_id == run_id and job.producer in by_pid:
                by_pid[job.producer].mark_found(job.seq)


def _mark_held(reports, by_pid: dict[int, OpenJobs]) -> None:
    """Jobs a live drain holds in memory only (fetched, not yet completed), as its report lists them."""
    for report in reports:
        for job_id in report.get("held_ids") or ():
            producer, _, seq = str(job_id).partition("-")
            if producer.isdigit() and seq.isdigit() and int(producer) in by_pid:
                by_pid[int(producer)].mark_found(int(seq))


def _report_key(report: dict) -> tuple:
    return report.get("name"), report.get("host"), report.get("pid")


def _is_live(report: dict, now: float) -> bool:
    try:
        updated_at = float(report.get("updated_at"))
    except (TypeError, ValueError):
        return False
    return not report.get("final") and now - updated_at <= LIVE_REPORT_SECONDS


def _live_reports_after(ledger: redis.Redis, run_id: str, previous: dict) -> dict:
    """The live drain reports, keyed by process. Each of `previous` (the last pass's) is awaited until it has
    published again or stopped being live: what it held then may since have moved to what it holds now, unseen."""
    deadline = time.monotonic() + LIVE_REPORT_SECONDS
    while True:
        now = time.time()
        reports = {_report_key(r): r for r in drain_reports.read(ledger, run_id) if _is_live(r, now)}
        unchanged = [key for key, report in previous.items()
                     if key in reports and reports[key].get("updated_at") == report.get("updated_at")]
        if not unchanged or time.monotonic() >= deadline:
            return reports
        _poll_pause()


def _poll_pause() -> None:
    time.sleep(REPORT_POLL_SECONDS)


def _drop_completed(ledger: LedgerReader, jobs: OpenJobs, v: Verdict) -> None:
    """Jobs completed since the ledger was first read: counted completed, no longer open."""
    for start, size in _spans(len(jobs.found)):
        done = ledger.completed_span(jobs.pid, start, size)
        confirmed, unknown, _ = jobs.read(start, size)
        if (confirmed | unknown) & done:
            v.completed += ((confirmed | unknown) & done).bit_count()
            v.recovered += (unknown & done).bit_count()
            jobs.store(start, size, confirmed & ~done, unknown & ~done)

