"""The drain's record/ack path in this process (DrainWorker._record against the suite's redis-server), so a mutation
campaign can attribute these tests to it: completions recorded before the acknowledgement, in one MULTI where the
ledger lives on the target, never acknowledged when the record failed, duplicates counted only when they are sure.
(tests/test_promises.py proves the same of a drain process: killed between the two, and under MONITOR.)"""

import io
from types import SimpleNamespace

import pytest
import redis

from queuestorm.drain import worker as drain
from queuestorm.drain import RECORD_RETRY_SECONDS, DrainWorker
from queuestorm.jobs import decode
from queuestorm.keys import RunKeys
from queuestorm.ledger import CompletionRecorder

from helpers import enqueue_jobs

JOBS = 3


class Setup:
    def __init__(self, redis_port, protocol, queue, run_id, ledger_db):
        target_url = f"redis://127.0.0.1:{redis_port}/0"
        self.target = redis.Redis(port=redis_port, db=0)
        self.ledger = redis.Redis(port=redis_port, db=ledger_db)
        enqueue_jobs(self.target, protocol, queue, run_id, JOBS, ledger=self.ledger)
        self.worker = DrainWorker(target_url, protocol, queue, ledger_url=f"redis://127.0.0.1:{redis_port}/{ledger_db}",
                                  consumer_id="recorder", out=io.StringIO())
        self.recorder = CompletionRecorder(self.ledger)
        self.keys = RunKeys(run_id)
        self.run_id = run_id
        self.acks: list[dict] = []  # each ack: whether it came with a pipeline, and what the ledger held then
        real_ack = self.worker.protocol.ack

        def ack(client, deliveries, pipeline=None):
            self.acks.append({"pipeline": pipeline is not None, "recorded": self.recorded(), "count": len(deliveries)})
            return real_ack(client, deliveries, pipeline)

        self.worker.protocol.ack = ack

    def fetch(self):
        deliveries = self.worker.protocol.fetch(self.target, 0.1, JOBS)
        assert len(deliveries) == JOBS
        return [(delivery, decode(delivery.body)) for delivery in deliveries]

    def recorded(self) -> int:
        return sum(self.ledger.getbit(self.keys.completed(1), seq) for seq in range(JOBS))

    def held(self) -> int:
        protocol = self.worker.protocol
        key = f"bull:{protocol.queue}:active" if protocol.name == "bullmq" else protocol.processing
        return self.target.llen(key)


class Clock:
    """queuestorm.drain's time, set by the test: time() for the completions' end-to-end, monotonic() for the
    retry deadline; and its gevent.sleep, recorded (the retry's backoff)."""

    def __init__(self, monkeypatch):
        self.wall, self.mono, self.sleeps = 1000.0, 100.0, []
        monkeypatch.setattr(drain, "time", SimpleNamespace(time=lambda: self.wall, monotonic=lambda: self.mono))
        monkeypatch.setattr(drain, "gevent", SimpleNamespace(sleep=self.sleeps.append))


@pytest.fixture
def setup(request, redis_port, queue, run_id):
    protocol, ledger_db = request.param
    s = Setup(redis_port, protocol, queue, run_id, ledger_db)
    yield s
    s.target.close()
    s.ledger.close()


@pytest.mark.parametrize("setup", [("reliable", 1)], indirect=True, ids=["ledger-elsewhere"])
def test_with_the_ledger_elsewhere_every_completion_is_recorded_before_the_one_ack(setup):
    jobs = setup.fetch()
    assert setup.held() == JOBS
    setup.worker._record(setup.target, setup.recorder, jobs)
    assert setup.acks == [{"pipeline": False, "recorded": JOBS, "count": JOBS}]
    assert setup.held() == 0 and setup.recorded() == JOBS
    assert int(setup.ledger.get(setup.keys.completions)) == JOBS
    assert (setup.worker.completed, setup.worker.duplicates) == (JOBS, 0)
    assert setup.worker.completed_by_run == {setup.run_id: JOBS}


def bullmq_installed():
    try:
        import bullmq  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("setup", [("reliable", 0), pytest.param(("bullmq", 0), marks=pytest.mark.skipif(
    not bullmq_installed(), reason="bullmq's package is not installed"))], indirect=True,
    ids=["reliable", "bullmq"])
def test_with_the_ledger_on_the_target_record_and_ack_are_one_multi(setup):
    """An ack in the record's MULTI joined by a command the server refuses: EXECABORT, so neither happened."""
    jobs = setup.fetch()
    real_ack = setup.worker.protocol.ack

    def ack_then_refused(client, deliveries, pipeline=None):
        real_ack(client, deliveries, pipeline)
        if pipeline is not None:
            pipeline.execute_command("LPUSH")  # wrong number of arguments: refused when queued
    setup.worker.protocol.ack = ack_then_refused
    with pytest.raises(redis.ResponseError):
        setup.worker._record(setup.target, setup.recorder, jobs)
    assert setup.acks == [{"pipeline": True, "recorded": 0, "count": JOBS}]
    assert setup.held() == JOBS and setup.recorded() == 0 and setup.worker.completed == 0

    setup.worker.protocol.ack = real_ack
    setup.worker._record(setup.target, setup.recorder, jobs)
    assert setup.held() == 0 and setup.recorded() == JOBS and setup.worker.completed == JOBS
    assert int(setup.ledger.get(setup.keys.completions)) == JOBS


@pytest.mark.parametrize("setup", [("reliable", 1)], indirect=True, ids=["ledger-elsewhere"])
def test_a_record_that_fails_leaves_the_jobs_unacknowledged(setup):
    jobs = setup.fetch()

    def refused(*_args, **_kwargs):
        raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")
    setup.recorder.record = refused
    with pytest.raises(redis.ResponseError, match="OOM"):
        setup.worker._record(setup.target, setup.recorder, jobs)
    assert setup.acks == [] and setup.held() == JOBS and setup.worker.completed == 0


@pytest.mark.parametrize("setup", [("reliable", 1)], indirect=True, ids=["ledger-elsewhere"])
def test_duplicates_are_counted_unless_an_earlier_attempt_may_have_applied(setup):
    jobs = setup.fetch()
    setup.worker._record(setup.target, setup.recorder, jobs)
    setup.worker._record(setup.target, setup.recorder, jobs[:2])  # delivered again: two duplicates
    assert (setup.worker.completed, setup.worker.duplicates) == (JOBS + 2, 2)
    assert {int(v) for v in setup.ledger.hvals(setup.keys.duplicates(1))} == {1}

    setup.worker._record(setup.target, setup.recorder, jobs[:1], retried=True)  # may have been applied: not counted
    assert (setup.worker.completed, setup.worker.duplicates) == (JOBS + 3, 2)

    real_record, calls = setup.recorder.record, []

    def blink_once(completions, ack=None, retry=False):  # the first attempt's reply is lost with the connection
        calls.append(retry)
        if len(calls) == 1:
            raise redis.ConnectionError("Connection reset by peer")
        return real_record(completions, ack=ack, retry=retry)
    setup.recorder.record = blink_once
    setup.worker._record(setup.target, setup.recorder, jobs[:1])
    assert calls == [False, True] and setup.worker.duplicates == 2 and setup.worker.errors == 1


@pytest.mark.parametrize("setup", [("list", 0)], indirect=True, ids=["list"])
def test_a_protocol_without_acks_is_only_recorded(setup):
    jobs = setup.fetch()
    setup.worker._record(setup.target, setup.recorder, jobs)
    assert setup.acks == [] and setup.recorded() == JOBS and setup.worker.completed == JOBS


@pytest.mark.parametrize("setup", [("reliable", 1)], indirect=True, ids=["ledger-elsewhere"])
def test_each_completion_carries_its_end_to_end_time_and_marks_its_run_seen(setup, monkeypatch):
    jobs = setup.fetch()
    clock = Clock(monkeypatch)
    jobs = [(delivery, job._replace(enqueued_at=clock.wall - 2.5 - i)) for i, (delivery, job) in enumerate(jobs)]
    recorded, real_record = [], setup.recorder.record

    def spy(completions, ack=None, retry=False):
        recorded.extend(completions)
        return real_record(completions, ack=ack, retry=retry)
    setup.recorder.record = spy
    setup.worker._record(setup.target, setup.recorder, jobs)
    assert [ms for _, ms in recorded] == [2500.0, 3500.0, 4500.0]
    assert setup.worker._run_last_seen == {setup.run_id: clock.wall}
    assert setup.worker._last_completion == clock.mono
    assert setup.worker._histogram.percentile(100) >= 4400


@pytest.mark.parametrize("setup", [("reliable", 1)], indirect=True, ids=["ledger-elsewhere"])
def test_a_ledger_that_blinks_is_retried_with_doubling_backoff_until_its_deadline(setup, monkeypatch):
    jobs = setup.fetch()
    clock = Clock(monkeypatch)
    real_record, failures = setup.recorder.record, []

    def blinking(completions, ack=None, retry=False):
        if len(failures) < 8:
            failures.append(retry)
            raise redis.ConnectionError(f"Connection reset by peer ({len(failures)})")
        return real_record(completions, ack=ack, retry=retry)
    setup.recorder.record = blinking
    setup.worker._record(setup.target, setup.recorder, jobs)
    assert clock.sleeps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]  # doubling, at most MAX_BACKOFF
    assert failures == [False] + [True] * 7 and setup.recorded() == JOBS and setup.acks[0]["recorded"] == JOBS
    assert setup.worker.errors == 8 and setup.worker.last_error == "ConnectionError: Connection reset by peer (8)"

    failures.clear()
    clock.sleeps.clear()
    deadline = clock.mono + RECORD_RETRY_SECONDS

    def failing_until_past_the_deadline(completions, ack=None, retry=False):
        failures.append(retry)
        clock.mono = deadline if len(failures) == 1 else deadline + 0.01  # at the deadline: one more try
        raise redis.ConnectionError("Connection refused")
    setup.recorder.record = failing_until_past_the_deadline
    with pytest.raises(redis.ConnectionError):
        setup.worker._record(setup.target, setup.recorder, jobs)
    assert failures == [False, True] and clock.sleeps == [0.05]
