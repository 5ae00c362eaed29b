"""The dyno harness of seed 003: each DynoWorkerUser is one worker of a worker dyno.

A dispatcher per Locust process (a dyno) sends --tasks-per-second (default: its share of --rate), round robin, onto each worker's own
list (under the run's prefix); every task is a ledger-recorded enqueue. A worker takes its tasks one at a time and
does the job's work: `fetch` (read up to --max-flats items of its list of flats), `save` (write the task's payload,
trim the list to --max-flats) and `ping`, each a timed Locust event, `task` timing the whole job; then it records
the completion in the ledger. A worker's backlog is the tasks sent to it and not completed; a worker reaching
--backlog-limit fails the run, which stops.
"""

import logging
import os
import time
from dataclasses import dataclass, field

import gevent
from locust import User, constant, task
from locust.runners import LocalRunner, WorkerRunner

from .distributed import LIMIT_MESSAGE
from .state import current, dyno_fleet
from .stop_once import StopsOnce
from ..redis.connection import DRAIN_CLIENT, LOAD_CLIENT, NETWORK_ERRORS, connect
from ..produce.failures import classified
from ..produce.timing import timed
from ..model.jobs import decode
from ..model.keys import RunKeys
from ..ledger.writer import CompletionRecorder
from ..model.periodic import every

log = logging.getLogger("queuestorm")

EVENT_TYPE = "dyno"
TICK = 0.01
FETCH_BLOCK_SECONDS = 1.0
FINISH_SECONDS = 10.0
STOP_DISPATCH_SECONDS = 5.0


@dataclass
class WorkerState:
    index: int
    queue: str
    flats: str
    sent: int = 0
    received: int = 0
    completed: int = 0
    max_backlog: int = 0
    reached_limit: bool = False
    timings: dict = field(default_factory=lambda: {name: [0.0, 0] for name in ("task", "fetch", "save", "ping")})

    @property
    def backlog(self) -> int:
        return self.sent - self.completed

    def row(self) -> dict:
        means = {f"{name}_mean_ms": round(total / count, 2) if count else None
                 for name, (total, count) in self.timings.items()}
        return {"pid": os.getpid(), "worker": self.index, "cycles": self.completed, "received": self.received,
                "max_backlog": self.max_backlog, "reached_limit": self.reached_limit, **means}


class DynoFleet:
    """The workers of one Locust process and the dispatcher that feeds them."""

    def __init__(self, environment):
        self.environment = environment
        self.runtime = current(environment)
        config = self.runtime.config
        self.config = config
        self.keys = RunKeys(config.run_id)
        self.workers: list[WorkerState] = []
        self._dispatcher: gevent.Greenlet | None = None
        self._client = None  # the dispatcher's, opened at its first tick
        self._stopping = False
        self._dispatching = True

    def add_worker(self) -> WorkerState:
        index = len(self.workers)
        base = self.keys.dyno_worker(self.runtime.recorder.producer_id, index)
        worker = WorkerState(index, base + ":tasks", base + ":flats")
        self.workers.append(worker)
        if self._dispatcher is None:
            self._credit, self._last_tick, self._turn = 0.0, time.monotonic(), 0
            self._dispatcher = every(TICK, self._dispatch_due)
        return worker

    def _dispatch_due(self) -> None:
        """One tick: the tasks due by now, sent round-robin to the workers in one pipeline."""
        if not self._dispatching:
            raise gevent.GreenletExit
        if self._client is None:  # the first tick
            if not self._rate():
                log.error("dyno workers need --tasks-per-second or --rate: no task is sent")
                raise gevent.GreenletExit
            self._client = connect(self.runtime.load_url, check=False, name=self.runtime.client_name(LOAD_CLIENT))
        runtime = self.runtime
        now = time.monotonic()
        # the rate share is read each tick: the master re-splits --rate when Locust workers join or leave
        self._credit += (now - self._last_tick) * self._rate()
        self._last_tick = now
        due = int(self._credit)
        if due <= 0 or not self.workers:
            return
        self._credit -= due
        batch = []
        for _ in range(due):
            worker = self.workers[self._turn % len(self.workers)]
            self._turn += 1
            seq = runtime.recorder.next_seq()
            batch.append((worker, seq, runtime.encoder.encode(seq)))
        self._send(self._client, batch)

    def _send(self, client, batch: list) -> None:
        """One pipeline of LPUSHes; each task is recorded enqueued, or maybe enqueued, whatever ends the send —
        also the kill that stops the dispatcher in the middle of it."""
        runtime, request = self.runtime, self.environment.events.request
        pipe = client.pipeline(transaction=False)
        for worker, _, body in batch:
            pipe.lpush(worker.queue, body)
        wait = runtime.replica_wait
        if wait is not None:  # --wait-replicas: the tasks count as sent once the replicas have them
            pipe.execute_command(*wait.command)
        t0 = time.perf_counter()
        error, confirmed = None, False
        try:
            replies = pipe.execute()
            if wait is not None:
                wait.confirm(replies[-1])
            confirmed = True
        except Exception as e:  # noqa: BLE001 — every failure is a failed Locust request
            error = e
        finally:
            for worker, seq, _ in batch:
                if confirmed:
                    runtime.recorder.enqueued(seq)
                    worker.sent += 1
                else:
                    runtime.recorder.maybe_enqueued(seq)
        elapsed = (time.perf_counter() - t0) * 1000
        for worker, _, body in batch:
            request.fire(request_type=EVENT_TYPE, name="send", response_time=elapsed, response_length=len(body),
                         exception=classified(error), context={})
            if confirmed:
                self._note_backlog(worker)

    def _rate(self) -> float:
        """The capacity search sets the rate step by step, through the pacer: --tasks-per-second gives way."""
        config = self.config
        return self.runtime.pacer.rate if config.find_capacity else config.tasks_per_second or self.runtime.pacer.rate

    def _note_backlog(self, worker: WorkerState) -> None:
        worker.max_backlog = max(worker.max_backlog, worker.backlog)
        if worker.backlog >= self.config.backlog_limit and not worker.reached_limit:
            worker.reached_limit = True
            log.error("dyno worker %d reached the backlog limit (%d)", worker.index, self.config.backlog_limit)
            if self._stopping or self.config.find_capacity:  # the search measures the backlog's growth itself
                return
            self._stopping = True
            runner = self.environment.runner
            if isinstance(runner, WorkerRunner):
                runner.send_message(LIMIT_MESSAGE, 1)
            elif isinstance(runner, LocalRunner):
                gevent.spawn(runner.quit)

    def stop_dispatch(self) -> None:
        """The send under way finishes (its tasks are then surely sent or surely not); a send that hangs past the
        deadline is killed, and its tasks are maybe enqueued."""
        self._dispatching = False
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=STOP_DISPATCH_SECONDS)
            self._dispatcher.kill()

    def finish(self) -> None:
        """After the users stopped: work off what was sent and not yet taken, as a graceful worker shutdown does."""
        deadline = time.monotonic() + FINISH_SECONDS
        runners = [gevent.spawn(_work_off, self, worker, deadline) for worker in self.workers]
        gevent.joinall(runners, timeout=FINISH_SECONDS + STOP_DISPATCH_SECONDS)
        gevent.killall(runners)  # a task hung past both: put back by its greenlet, as a stopped user's is

    def rows(self) -> list[dict]:
        return [w.row() for w in self.workers]


def _work_off(fleet: DynoFleet, worker: WorkerState, deadline: float) -> None:
    """No task is taken after the deadline: what is left stays on the worker's list, unfinished, never lost."""
    client = connect(fleet.runtime.load_url, check=False, name=fleet.runtime.client_name(DRAIN_CLIENT))
    ledger = CompletionRecorder(connect(fleet.runtime.ledger_url, check=False))
    while time.monotonic() < deadline:
        body = client.rpop(worker.queue)
        if body is None:
            return
        _do_or_put_back(fleet, worker, client, ledger, body)


def _do_or_put_back(fleet: DynoFleet, worker: WorkerState, client, ledger: CompletionRecorder, body: bytes) -> None:
    try:
        _do_task(fleet, worker, client, ledger, body)
    except gevent.GreenletExit:
        # stopped mid-task (a user past --stop-timeout, a work-off past its deadline): the task goes back to the
        # consuming end of its list, where the work-off or the check finds it, rather than vanishing with the greenlet
        client.rpush(worker.queue, body)
        raise


def _timed(fleet: DynoFleet, worker: WorkerState, name: str, operation) -> Exception | None:
    """Run one step as a timed Locust event, kept in the worker's own means too; returns its error, if any."""
    with timed(fleet.environment.events.request, EVENT_TYPE, name) as request:
        operation()
    timing = worker.timings[name]
    timing[0] += request.response_time
    timing[1] += 1
    return request.exception


def _do_task(fleet: DynoFleet, worker: WorkerState, client, ledger: CompletionRecorder, body: bytes) -> None:
    """The job's work; a task whose step failed is not completed (the loss check will say so)."""
    worker.received += 1
    max_flats = fleet.config.max_flats

    def save():
        pipe = client.pipeline(transaction=False)
        pipe.lpush(worker.flats, body)
        pipe.ltrim(worker.flats, 0, max_flats - 1)
        pipe.execute()

    def work():
        for name, operation in (("fetch", lambda: client.lrange(worker.flats, 0, max_flats - 1)), ("save", save),
                                ("ping", client.ping)):
            error = _timed(fleet, worker, name, operation)
            if error is not None:
                raise error
        job = decode(body)
        if job is not None:
            ledger.record([(job, (time.time() - job.enqueued_at) * 1000)])

    if _timed(fleet, worker, "task", work) is None:
        worker.completed += 1


class DynoWorkerUser(StopsOnce, User):
    """One worker of a worker dyno (seed 003). Needs --rate: the dispatcher sends tasks at this process's share."""

    wait_time = constant(0)

    def on_start(self):
        runtime = current(self.environment)
        self.fleet = dyno_fleet(self.environment, DynoFleet)
        self.worker = self.fleet.add_worker()
        self.client = connect(runtime.load_url, block_seconds=FETCH_BLOCK_SECONDS, check=False,
                              name=runtime.client_name(DRAIN_CLIENT))
        self.ledger = CompletionRecorder(connect(runtime.ledger_url, check=False))

    @task
    def work(self):
        try:
            reply = self.client.brpop([self.worker.queue], FETCH_BLOCK_SECONDS)
        except NETWORK_ERRORS as e:
            self.environment.events.request.fire(request_type=EVENT_TYPE, name="receive", response_time=0,
                                                 response_length=0, exception=classified(e), context={})
            gevent.sleep(0.1)
            return
        if reply is None:
            return
        _do_or_put_back(self.fleet, self.worker, self.client, self.ledger, reply[1])
