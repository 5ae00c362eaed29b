"""The drain's record/ack path in this process (DrainWorker._record against the suite's redis-server), so a mutation
campaign can attribute these tests to it: completions recorded before the acknowledgement, in one MULTI where the
ledger lives on the target, never acknowledged when the record failed, duplicates counted only when they are sure.
(tests/test_promises.py proves the same of a drain process: killed between the two, and under MONITOR.)"""

import io

import pytest
import redis

from queuestorm.drain import DrainWorker
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
        return self.target.llen(self.worker.protocol.processing)


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


@pytest.mark.parametrize("setup", [("reliable", 0)], indirect=True, ids=["ledger-on-the-target"])
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
