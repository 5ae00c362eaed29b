"""The producer's buffered records reach the ledger exactly: every bit, whatever the order and whatever failed."""

import os
import random
import socket
import time

import pytest
import redis

from queuestorm.keys import RunKeys
from queuestorm.ledger import Ledger


def stored_bits(r, key, n):
    """The first n bits of a bitmap, from one GET (bit 0 is the first byte's most significant bit, as GETBIT's)."""
    data = (r.get(key) or b"").ljust((n + 7) // 8, b"\0")
    return [(data[i >> 3] >> (7 - (i & 7))) & 1 for i in range(n)]


def test_outcomes_recorded_out_of_order_over_several_flushes_are_all_stored(r, run_id):
    recorder = Ledger(r, run_id).register_producer()
    seqs = [recorder.next_seq() for _ in range(5000)]
    random.Random(7).shuffle(seqs)
    maybe = set(seqs[::97])
    for i, seq in enumerate(seqs):
        (recorder.maybe_enqueued if seq in maybe else recorder.enqueued)(seq)
        if i % 700 == 0:
            recorder.flush()
    recorder.close()
    keys = recorder.keys
    assert stored_bits(r, keys.enqueued(recorder.producer_id), 5000) == [int(s not in maybe) for s in range(5000)]
    assert stored_bits(r, keys.maybe_enqueued(recorder.producer_id), 5000) == [int(s in maybe) for s in range(5000)]
    assert r.strlen(keys.enqueued(recorder.producer_id)) == 5000 // 8  # no padding beyond the last job
    assert r.hget(keys.producer(recorder.producer_id), "issued") == b"5000"


class PipelineHook:
    """Wraps the ledger client's pipelines to run `before` ahead of the real execute."""

    def __init__(self, client, before):
        self.client, self.before = client, before

    def pipeline(self, **kw):
        pipe = self.client.pipeline(**kw)
        real_execute = pipe.execute

        def execute(*a, **k):
            self.before()
            return real_execute(*a, **k)

        pipe.execute = execute
        return pipe


def test_an_outcome_recorded_while_a_flush_is_in_flight_is_written_by_the_next_flush(r, run_id):
    recorder = Ledger(r, run_id).register_producer()
    for _ in range(16):
        recorder.next_seq()
    recorder.enqueued(0)
    recorder.client = PipelineHook(r, lambda: recorder.enqueued(1))  # same byte as seq 0, set after the snapshot
    recorder.flush()
    recorder.client = r
    recorder.close()
    assert stored_bits(r, recorder.keys.enqueued(recorder.producer_id), 3) == [1, 1, 0]


def test_a_failed_flush_keeps_its_records_for_the_next_one(r, run_id):
    recorder = Ledger(r, run_id).register_producer()
    for seq in range(20):
        recorder.next_seq()
        recorder.enqueued(seq)

    def fail():
        raise redis.ConnectionError("ledger unreachable")

    recorder.client = PipelineHook(r, fail)
    with pytest.raises(redis.ConnectionError):
        recorder.flush()
    recorder.client = r
    recorder.close()
    assert stored_bits(r, recorder.keys.enqueued(recorder.producer_id), 24) == [1] * 20 + [0] * 4


def test_a_batch_mixing_producers_and_runs_names_exactly_the_jobs_completed_before(r, run_id):
    from queuestorm.jobs import JobRef
    from queuestorm.ledger import CompletionRecorder

    other_run = run_id + "-b"
    recorder = CompletionRecorder(r)
    assert recorder.record([(JobRef(run_id, 2, 5, 0.0), 1.0)]) == 0
    batch = [(JobRef(run_id, 1, 5, 0.0), 1.0), (JobRef(other_run, 2, 5, 0.0), 1.0), (JobRef(run_id, 2, 4, 0.0), 1.0),
             (JobRef(run_id, 2, 5, 0.0), 1.0), (JobRef(run_id, 1, 6, 0.0), 1.0), (JobRef(run_id, 1, 5, 0.0), 1.0)]
    assert recorder.record(batch) == 2
    keys = RunKeys(run_id)
    assert r.hgetall(keys.duplicates(2)) == {b"5": b"1"} and r.hgetall(keys.duplicates(1)) == {b"5": b"1"}
    assert r.hgetall(RunKeys(other_run).duplicates(2)) == {}
    assert [r.getbit(keys.completed(2), s) for s in (3, 4, 5)] == [0, 1, 1]
    assert int(r.get(keys.completions)) == 6 and int(r.get(RunKeys(other_run).completions)) == 1


def test_a_retried_record_counts_no_duplicate_its_own_first_attempt_could_have_made(r, run_id):
    """The first attempt's reply was lost with the connection (it may have been applied): its retry must not
    report the jobs as completed twice."""
    from queuestorm.jobs import JobRef
    from queuestorm.ledger import CompletionRecorder

    recorder = CompletionRecorder(r)
    batch = [(JobRef(run_id, 1, seq, 0.0), 1.0) for seq in range(3)]
    assert recorder.record(batch) == 0  # applied; pretend its reply never came back
    assert recorder.record(batch, retry=True) == 0
    assert r.hgetall(RunKeys(run_id).duplicates(1)) == {}
    assert recorder.record(batch) == 3  # a genuine second delivery is still a duplicate


def test_the_ledger_s_readers_say_what_its_writers_wrote(r, run_id):
    from queuestorm.ledger import CompletionRecorder
    from queuestorm.jobs import JobRef

    ledger = Ledger(r, run_id)
    assert ledger.run_id == run_id and ledger.keys.meta == RunKeys(run_id).meta
    assert not ledger.exists() and ledger.meta() == {} and ledger.completions() == 0
    assert ledger.unclosed_producers() == []
    ledger.create_run({"protocol": "stream", "queue": "q", "rate": 12.5})
    meta = ledger.meta()
    assert ledger.exists() and {k: meta[k] for k in ("protocol", "queue", "rate")} == {
        "protocol": "stream", "queue": "q", "rate": "12.5"}
    assert float(meta["created_at"]) > 0
    started = time.time()
    first, second, third = (ledger.register_producer() for _ in range(3))
    assert [p.producer_id for p in (first, second, third)] == [1, 2, 3]
    registered = {k.decode(): v.decode() for k, v in r.hgetall(RunKeys(run_id).producer(2)).items()}
    assert abs(float(registered.pop("started_at")) - started) < 5
    assert registered == {"host": socket.gethostname(), "pid": str(os.getpid()), "issued": "0", "closed": "0"}
    first.close()
    assert r.hget(RunKeys(run_id).producer(1), "dropped") == b"0"  # none dropped unless said
    r.delete(RunKeys(run_id).producer(3))  # a producer hash gone: never closed either
    assert ledger.unclosed_producers() == [2, 3]
    CompletionRecorder(r).record([(JobRef(run_id, 1, seq, 0.0), 1.0) for seq in range(4)])
    assert ledger.completions() == 4


def test_a_producer_counts_each_outcome_and_writes_not_sent_and_dropped(r, run_id):
    recorder = Ledger(r, run_id).register_producer()
    for outcome in ("enqueued", "maybe_enqueued", "enqueued", "maybe_enqueued", "not_sent", "not_sent", "not_sent"):
        getattr(recorder, outcome)(recorder.next_seq())
    assert (recorder.issued, recorder.confirmed, recorder.unconfirmed, recorder.unsent) == (7, 2, 2, 3)
    recorder.close(dropped=4)
    recorder.close(dropped=9)  # closed once: a second close changes nothing
    stored = {k.decode(): v.decode() for k, v in r.hgetall(recorder.keys.producer(recorder.producer_id)).items()}
    assert {k: stored[k] for k in ("issued", "not_sent", "closed", "dropped")} == {
        "issued": "7", "not_sent": "3", "closed": "1", "dropped": "4"}


def test_completions_of_one_batch_in_the_same_latency_bucket_are_all_counted(r, run_id):
    from queuestorm.jobs import JobRef
    from queuestorm.latency import bucket_of
    from queuestorm.ledger import CompletionRecorder

    CompletionRecorder(r).record([(JobRef(run_id, 1, seq, 0.0), 12.0) for seq in range(3)]
                                 + [(JobRef(run_id, 1, 3, 0.0), 900.0)])
    assert r.hgetall(RunKeys(run_id).e2e) == {str(bucket_of(12.0)).encode(): b"3", str(bucket_of(900.0)).encode(): b"1"}


def test_a_producer_flushes_by_itself_every_flush_at_records_counting_maybe_ones(r, run_id, monkeypatch):
    from queuestorm.ledger import ProducerRecorder

    monkeypatch.setattr(ProducerRecorder, "FLUSH_AT", 3)
    recorder = Ledger(r, run_id).register_producer()

    def flushed_issued():
        return int(r.hget(recorder.keys.producer(recorder.producer_id), "issued"))
    for phase, first in enumerate((0, 3)):  # an enqueued and a maybe-enqueued record: not yet; the third flushes
        order = ("enqueued", "maybe_enqueued") if phase == 0 else ("maybe_enqueued", "enqueued")
        for outcome in order:
            getattr(recorder, outcome)(recorder.next_seq())
        assert flushed_issued() == first, phase
        recorder.enqueued(recorder.next_seq())
        assert flushed_issued() == first + 3, phase
    assert stored_bits(r, recorder.keys.enqueued(recorder.producer_id), 6) == [1, 0, 1, 0, 1, 1]
