"""The loss checker's classification, on fakeredis (no network needed)."""

import fakeredis
import pytest

from queuestorm.check import check_run
from queuestorm.errors import UsageError
from queuestorm.jobs import JobRef
from queuestorm.ledger import CompletionRecorder, Ledger


@pytest.fixture
def fr():
    return fakeredis.FakeRedis()


def make_run(fr, run_id="r1"):
    ledger = Ledger(fr, run_id)
    ledger.create_run({"protocol": "list"})
    return ledger


def complete(fr, run_id, producer, seq):
    return CompletionRecorder(fr).record([(JobRef(run_id, producer, seq, 0.0), 5.0)]) == 1


def test_every_class_of_outcome_is_counted_with_its_ids(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for seq in range(10):
        s = p.next_seq()
        (p.maybe_enqueued if seq in (8, 9) else p.enqueued)(s)
    p.close()
    for seq in [0, 1, 2, 3, 4, 5, 8]:  # 6, 7 lost; 8 recovered; 9 indeterminate
        assert complete(fr, "r1", p.producer_id, seq) is False
    assert complete(fr, "r1", p.producer_id, 3) is True  # duplicate
    assert complete(fr, "r1", p.producer_id, 3) is True
    complete(fr, "r1", p.producer_id, 20)  # never issued: unexpected

    v = check_run(fr, "r1")
    assert (v.enqueued, v.maybe_enqueued, v.completed) == (8, 2, 8)
    assert (v.lost, v.duplicated, v.duplicate_deliveries, v.unexpected, v.recovered) == (2, 1, 2, 1, 1)
    assert v.lost_ids == ["1-6", "1-7"]
    assert v.duplicated_ids == ["1-3"]
    assert v.unexpected_ids == ["1-20"]
    assert v.verdict == "fail"
    assert v.e2e_ms["p50"] == pytest.approx(5.0, rel=0.03)


def test_clean_run_passes_and_duplicates_fail_only_above_the_allowance(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for _ in range(100):
        p.enqueued(p.next_seq())
    p.close()
    for seq in range(100):
        complete(fr, "r1", p.producer_id, seq)
    assert check_run(fr, "r1").verdict == "pass"
    complete(fr, "r1", p.producer_id, 50)
    assert check_run(fr, "r1").verdict == "fail"
    v = check_run(fr, "r1", max_duplicated=1)
    assert v.verdict == "pass" and v.duplicated == 1


def test_unknown_producer_completions_are_unexpected(fr):
    make_run(fr)
    complete(fr, "r1", 99, 0)
    v = check_run(fr, "r1")
    assert v.unexpected == 1 and v.unexpected_ids == ["99-0"]


def test_a_producer_that_died_before_flushing_leaves_indeterminate_jobs_not_lost_ones(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for _ in range(5):
        p.enqueued(p.next_seq())
    p.flush()
    for _ in range(5):
        p.enqueued(p.next_seq())  # buffered, never flushed: the process "dies"
    fr.hset(ledger.keys.producer(p.producer_id), "issued", 10)
    for seq in range(8):
        complete(fr, "r1", p.producer_id, seq)
    v = check_run(fr, "r1")
    assert v.unclosed_producers == [p.producer_id]
    assert (v.enqueued, v.maybe_enqueued, v.lost, v.unexpected, v.recovered) == (5, 5, 0, 0, 3)


def test_jobs_a_dead_producer_issued_after_its_last_flush_are_recovered_not_unexpected(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for _ in range(5):
        p.enqueued(p.next_seq())
    p.flush()  # the ledger says issued = 5
    for _ in range(4):
        p.enqueued(p.next_seq())  # enqueued, then the process is killed before the next flush
    for seq in range(9):
        complete(fr, "r1", p.producer_id, seq)
    v = check_run(fr, "r1")
    assert (v.enqueued, v.maybe_enqueued, v.completed, v.lost, v.unexpected, v.recovered) == (5, 4, 9, 0, 0, 4)
    assert v.verdict == "pass"


def test_first_ids_follow_sequence_order_across_byte_boundaries(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for _ in range(40):
        p.enqueued(p.next_seq())
    p.close()
    for seq in range(40):
        if seq not in (7, 8, 31, 39):
            complete(fr, "r1", p.producer_id, seq)
    v = check_run(fr, "r1", id_limit=3)
    assert v.lost == 4 and v.lost_ids == ["1-7", "1-8", "1-31"]


def test_unknown_run_id_is_a_usage_error(fr):
    with pytest.raises(UsageError, match="unknown run id 'nope'"):
        check_run(fr, "nope")


def test_nothing_enqueued_proves_nothing_and_fails(fr):
    make_run(fr)
    v = check_run(fr, "r1")
    assert v.verdict == "fail" and "nothing was proven" in v.reasons[0]


def test_a_batch_records_every_job_and_counts_duplicates_within_it(fr):
    ledger = make_run(fr)
    p = ledger.register_producer()
    for _ in range(5):
        p.enqueued(p.next_seq())
    p.close()
    recorder = CompletionRecorder(fr)
    jobs = [(JobRef("r1", 1, seq, 0.0), 2.0) for seq in (0, 1, 2, 2, 3, 4)]
    assert recorder.record(jobs) == 1
    assert int(fr.get(ledger.keys.completions)) == 6
    v = check_run(fr, "r1")
    assert (v.completed, v.duplicated, v.duplicated_ids, v.lost) == (5, 1, ["1-2"], 0)


def test_bitmaps_read_in_chunks_classify_exactly_as_read_whole(fr, monkeypatch):
    import random

    from queuestorm import check

    ledger = make_run(fr)
    rng = random.Random(3)
    closed = ledger.register_producer()
    dying = ledger.register_producer()  # never closes: its unrecorded seqs are indeterminate
    for p, n in ((closed, 203), (dying, 150)):
        for _ in range(n):
            seq = p.next_seq()
            roll = rng.random()
            if roll < 0.8:
                p.enqueued(seq)
            elif roll < 0.9:
                p.maybe_enqueued(seq)
        p.flush()
        for _ in range(n // 3):
            complete(fr, "r1", p.producer_id, rng.randrange(n + 40))  # some lost, some duplicated, some unexpected
    closed.close()

    whole = check_run(fr, "r1").to_json()
    monkeypatch.setattr(check, "CHUNK_BYTES", 3)  # 24 jobs a chunk: every boundary case occurs
    chunked = check_run(fr, "r1").to_json()
    assert chunked == whole
    assert whole["lost"] and whole["unexpected"] and whole["recovered"] and whole["duplicated"]
    assert whole["maybe_enqueued"] > 0 and whole["lost_ids"] and whole["unexpected_ids"]


def test_producers_dropped_and_not_sent_are_summed_and_absent_fields_count_zero(fr):
    """Two producers closed with their figures, and one registered that died before any flush (its hash has no
    not_sent, no dropped): summed, the last counting nothing."""
    ledger = make_run(fr)
    for dropped, not_sent in ((2, 1), (5, 3)):
        p = ledger.register_producer()
        for _ in range(not_sent):
            p.not_sent(p.next_seq())
        p.enqueued(p.next_seq())
        p.close(dropped=dropped)
    ledger.register_producer()  # died at once
    v = check_run(fr, "r1")
    assert (v.producers, v.dropped, v.not_sent, v.unclosed_producers) == (3, 7, 4, [3])


def test_bitmaps_longer_than_the_producer_s_record_are_read_whole(fr):
    """A producer's hash gone (a ledger trimmed by hand): its enqueued and maybe-enqueued bitmaps still say how far
    its jobs go, each read to its end though the other bitmaps are shorter."""
    from queuestorm.keys import RunKeys

    keys = RunKeys("r1")
    make_run(fr)
    fr.setbit(keys.enqueued(1), 20, 1)  # confirmed, never completed: lost
    fr.setbit(keys.maybe_enqueued(2), 30, 1)  # maybe-enqueued only
    fr.set(keys.producer_counter, 2)
    v = check_run(fr, "r1")
    assert (v.enqueued, v.lost, v.lost_ids, v.maybe_enqueued) == (1, 1, ["1-20"], 1)


def test_each_id_list_holds_exactly_id_limit_ids_over_several_producers(fr):
    """Per producer: 2 unexpected completions and 2 lost jobs. With a limit of 3 each list stops at 3, the second
    producer adding the one id left; with a limit of 1, one id each (the last room is still room)."""
    ledger = make_run(fr)
    for _ in range(2):
        p = ledger.register_producer()
        for _ in range(4):
            p.enqueued(p.next_seq())
        p.close()
        for seq in (0, 1):
            complete(fr, "r1", p.producer_id, seq)
        for seq in (40, 41):
            complete(fr, "r1", p.producer_id, seq)  # never issued
    v = check_run(fr, "r1", id_limit=3)
    assert (v.lost, v.unexpected) == (4, 4)
    assert v.lost_ids == ["1-2", "1-3", "2-2"] and v.unexpected_ids == ["1-40", "1-41", "2-40"]
    v = check_run(fr, "r1", id_limit=1)
    assert v.lost_ids == ["1-2"] and v.unexpected_ids == ["1-40"]


def test_only_this_run_s_keys_name_its_producers(fr):
    """Producers come from the run's counter and its own p:<n> keys: another run's producers and another
    application's keys (not even UTF-8) are not looked at."""
    ledger = make_run(fr)
    p = ledger.register_producer()
    p.enqueued(p.next_seq())
    p.close()
    complete(fr, "r1", 1, 0)
    other = make_run(fr, "r2")
    for _ in range(3):
        other.register_producer().close()
    fr.set(b"\xff\xfeanother application's key:p:9", b"x")
    fr.set(b"queuestorm:{r1}x:p:7", b"x")
    v = check_run(fr, "r1")
    assert (v.producers, v.enqueued, v.completed, v.verdict) == (1, 1, 1, "pass")


def test_the_verdict_names_its_run_and_protocol_and_counts_invalid_from_zero(fr):
    from queuestorm.protocols import make_protocol

    ledger = make_run(fr)
    p = ledger.register_producer()
    p.enqueued(p.next_seq())
    p.close()
    v = check_run(fr, "r1", protocol=make_protocol("list", "q"))  # no Redis under test given: the ledger decides
    assert (v.run_id, v.protocol, v.invalid, v.lost, v.unfinished) == ("r1", "list", 0, 1, 0)
    Ledger(fr, "r2").create_run({"queue": "q"})  # a meta without its protocol
    assert check_run(fr, "r2").protocol == "?"


def test_duplicated_ids_stop_at_id_limit_over_several_producers(fr):
    ledger = make_run(fr)
    for _ in range(2):
        p = ledger.register_producer()
        for _ in range(3):
            p.enqueued(p.next_seq())
        p.close()
        for seq in (0, 1, 2, 0, 1):
            complete(fr, "r1", p.producer_id, seq)
    v = check_run(fr, "r1", max_duplicated=10, id_limit=3)
    assert v.duplicated == 4 and v.duplicated_ids == ["1-0", "1-1", "2-0"]
    v = check_run(fr, "r1", max_duplicated=10, id_limit=2)
    assert v.duplicated_ids == ["1-0", "1-1"]
