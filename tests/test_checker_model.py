"""The checker against a model: random histories applied to a real ledger and a real queue of every protocol, and
check_run's classification compared with a plain model of Jepsen's total-queue semantics.

Each job of a history has: what its producer recorded (confirmed, maybe, not_sent, or nothing at all: a job
injected under a seq never issued or a producer never registered), whether its body reached the queue, how many
times it was completed (0, 1, 2) and whether a copy is still in the queue when the check runs. A job sent and
neither completed nor left in the queue was deleted by hand. Foreign bodies (not queuestorm's) sit in the queue too.
"""

import importlib.util
import os
import time
import uuid
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuestorm.check import check_run
from queuestorm.jobs import JobEncoder, JobRef, decode
from queuestorm.ledger import CompletionRecorder, Ledger
from queuestorm.protocols import PROTOCOLS, make_protocol

EXAMPLES_PER_PROTOCOL = int(os.environ.get("QS_MODEL_EXAMPLES", "30"))  # bench/mutation.py runs fewer
OPTIONAL_PACKAGE = {"bullmq": "bullmq"}  # protocols that read files from a package that may not be installed
FETCH_SECONDS = 10.0


def available_protocols() -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(
                OPTIONAL_PACKAGE.get(name) is not None and importlib.util.find_spec(OPTIONAL_PACKAGE[name]) is None,
                reason=f"needs the {OPTIONAL_PACKAGE.get(name)} package"))
            for name in PROTOCOLS]


@dataclass(frozen=True)
class PlannedJob:
    recorded: str  # confirmed | maybe | not_sent | none
    producer: int  # 0 or 1: index of a registered producer; "none" jobs of producer 1 use an unregistered id
    sent: bool
    completions: int
    left_in_queue: bool


planned_job = st.builds(
    PlannedJob,
    recorded=st.sampled_from(["confirmed", "confirmed", "maybe", "not_sent", "none"]),
    producer=st.integers(0, 1),
    sent=st.booleans(),
    completions=st.sampled_from([0, 0, 1, 2]),
    left_in_queue=st.booleans(),
).map(lambda j: j if j.sent else PlannedJob(j.recorded, j.producer, False, j.completions, False))

history = st.fixed_dictionaries({
    "jobs": st.lists(planned_job, min_size=4, max_size=30),
    "foreign": st.integers(0, 3),
    "max_lost": st.integers(0, 3),
    "max_duplicated": st.integers(0, 2),
})


def expected(jobs: list[PlannedJob], max_lost: int, max_duplicated: int) -> dict:
    """Jepsen's total queue: what a checker must say of these jobs."""
    enqueue_known = [j for j in jobs if j.recorded in ("confirmed", "maybe")]
    never_enqueued = [j for j in jobs if j.recorded in ("not_sent", "none")]
    counts = {
        "enqueued": sum(j.recorded == "confirmed" for j in jobs),
        "maybe_enqueued": sum(j.recorded == "maybe" for j in jobs),
        "not_sent": sum(j.recorded == "not_sent" for j in jobs),
        "completed": sum(j.completions > 0 for j in jobs),
        "lost": sum(j.recorded == "confirmed" and not j.completions and not j.left_in_queue for j in jobs),
        "unfinished": sum(not j.completions and j.left_in_queue for j in enqueue_known),
        "duplicated": sum(j.completions > 1 for j in jobs),
        "duplicate_deliveries": sum(j.completions - 1 for j in jobs if j.completions > 1),
        "unexpected": sum(j.completions > 0 for j in never_enqueued),
        "recovered": sum(j.recorded == "maybe" and j.completions > 0 for j in jobs),
    }
    fails = (counts["lost"] > max_lost or counts["unfinished"] or counts["unexpected"]
             or counts["duplicated"] > max_duplicated or counts["enqueued"] + counts["maybe_enqueued"] == 0)
    counts["verdict"] = "fail" if fails else "pass"
    return counts


class AppliedHistory:
    """A history written to the ledger and the queue; `refs[i]` is the JobRef of jobs[i]."""

    def __init__(self, client: redis.Redis, protocol, run_id: str):
        self.client = client
        self.protocol = protocol
        self.run_id = run_id
        ledger = Ledger(client, run_id)
        ledger.create_run({"protocol": protocol.name, "queue": protocol.queue})
        self.producers = [ledger.register_producer(), ledger.register_producer()]
        self.unregistered_id = self.producers[-1].producer_id + 100
        self.refs: list[JobRef] = []

    def apply(self, jobs: list[PlannedJob], foreign: int) -> None:
        for job in jobs:
            self.refs.append(self._record_enqueue(job))
        for producer in self.producers:
            producer.close()
        self._deliver([i for i, job in enumerate(jobs) if job.sent and (job.completions or not job.left_in_queue)],
                      jobs)
        recorder = CompletionRecorder(self.client)
        for i, job in enumerate(jobs):
            if not job.sent:
                for _ in range(job.completions):
                    recorder.record([(self.refs[i], 1.0)])
        for n in range(foreign):
            self.protocol.enqueue(self.client, b'{"foreign":%d}' % n)
        for i, job in enumerate(jobs):
            if job.left_in_queue:
                self.protocol.enqueue(self.client, self.body(i))

    def body(self, i: int) -> bytes:
        ref = self.refs[i]
        return JobEncoder(ref.run_id, ref.producer, 4).encode(ref.seq, now=ref.enqueued_at)

    def _record_enqueue(self, job: PlannedJob) -> JobRef:
        producer = self.producers[job.producer]
        if job.recorded == "none":
            # never issued: past every seq the producer hands out, or under a producer id never registered
            pid = self.unregistered_id if job.producer else producer.producer_id
            return JobRef(self.run_id, pid, 1000 + len(self.refs), time.time())
        seq = producer.next_seq()
        {"confirmed": producer.enqueued, "maybe": producer.maybe_enqueued, "not_sent": producer.not_sent}[
            job.recorded](seq)
        return JobRef(self.run_id, producer.producer_id, seq, time.time())

    def _deliver(self, indexes: list[int], jobs: list[PlannedJob]) -> None:
        """Enqueue these jobs, fetch every one back, record each completion before its ack as the drain does;
        the jobs fetched with no completion are acknowledged unrecorded: deleted by hand."""
        for i in indexes:
            self.protocol.enqueue(self.client, self.body(i))
        by_seq = {(self.refs[i].producer, self.refs[i].seq): jobs[i] for i in indexes}
        recorder = CompletionRecorder(self.client)
        fetched = 0
        deadline = time.monotonic() + FETCH_SECONDS
        while fetched < len(indexes):
            assert time.monotonic() < deadline, f"fetched {fetched} of {len(indexes)} jobs"
            for delivery in self.protocol.fetch(self.client, 0.1, count=10):
                ref = decode(delivery.body)
                assert ref is not None, delivery.body
                for _ in range(by_seq[ref.producer, ref.seq].completions):
                    recorder.record([(ref, 1.0)])
                self.protocol.ack(self.client, [delivery])
                fetched += 1


def checked(client, protocol_name: str, example: dict):
    run_id = f"m-{uuid.uuid4().hex[:12]}"
    protocol = make_protocol(protocol_name, f"model-{uuid.uuid4().hex[:8]}", "model-consumer", 30.0)
    protocol.start_consumer(client)
    applied = AppliedHistory(client, protocol, run_id)
    applied.apply(example["jobs"], example["foreign"])
    verdict = check_run(client, run_id, target=client, protocol=protocol, max_lost=example["max_lost"],
                        max_duplicated=example["max_duplicated"])
    protocol.stop_consumer(client)
    return applied, verdict


def job_ids(applied: AppliedHistory, jobs: list[PlannedJob], which) -> set[str]:
    return {applied.refs[i].job_id for i, job in enumerate(jobs) if which(job)}


examples_run: dict[str, int] = {}


@pytest.mark.parametrize("protocol_name", available_protocols())
@settings(max_examples=EXAMPLES_PER_PROTOCOL, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=history)
def test_checker_agrees_with_the_total_queue_model(protocol_name, redis_port, example):
    client = redis.Redis(port=redis_port)
    try:
        applied, v = checked(client, protocol_name, example)
    finally:
        client.close()
    examples_run[protocol_name] = examples_run.get(protocol_name, 0) + 1
    jobs = example["jobs"]
    want = expected(jobs, example["max_lost"], example["max_duplicated"])
    got = {name: getattr(v, name) for name in want}
    assert got == want, jobs
    assert set(v.lost_ids) == job_ids(applied, jobs, lambda j: j.recorded == "confirmed" and not j.completions
                                      and not j.left_in_queue)
    assert set(v.unfinished_ids) == job_ids(applied, jobs, lambda j: j.recorded in ("confirmed", "maybe")
                                            and not j.completions and j.left_in_queue)
    assert set(v.duplicated_ids) == job_ids(applied, jobs, lambda j: j.completions > 1)
    assert set(v.unexpected_ids) == job_ids(applied, jobs, lambda j: j.recorded in ("not_sent", "none")
                                            and j.completions)


def test_examples_per_protocol_reported():
    """Runs after the model test in the same process (-n 0): one line with the example count per protocol."""
    if not examples_run:
        pytest.skip("the model test did not run in this process")
    print("model-based examples per protocol:", dict(sorted(examples_run.items())))
