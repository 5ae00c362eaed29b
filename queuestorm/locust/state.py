"""What queuestorm keeps on each Locust Environment: the run's configuration, the session (standalone and master),
this process's producer, the master's messages to a worker; and the accessors users read it through."""

import logging
import time

import gevent
import gevent.event
from locust.runners import WorkerRunner

from ..model.environment import state_of
from ..model.errors import UsageError
from ..model.options import RunConfig
from ..observe.timeline import sum_counts
from ..observe.vitals import VitalsSampler
from ..produce.runtime import ProducerRuntime
from ..redis.connection import redact
from ..redis.reachability import unreachable_loopback
from ..run.session import Session
from .distributed import WorkerReporter, report_seconds
from .exit import cannot_run
from .stats_window import StatsWindow

log = logging.getLogger("queuestorm")

READY_TIMEOUT = 30


class State:
    """What queuestorm keeps on a Locust Environment (attached and read through model/environment.py)."""

    stats_window = StatsWindow  # Locust's statistics over a capacity step, for the run layer that cannot import Locust

    def __init__(self, environment, config: RunConfig):
        self.environment = environment
        self.config = config
        self.session: Session | None = None  # standalone and master
        self.runtime: ProducerRuntime | None = None  # this process's producer for the current run
        self.rate_share = config.rate
        self.reporter: WorkerReporter | None = None
        self.producing = gevent.event.Event()
        self.start_wanted = False
        self.quitting = False
        self.dyno = None  # this process's DynoFleet, when it runs dyno workers
        self.dyno_rows: list[dict] = []  # every process's dyno workers, gathered where the check runs

    def counts_of(self, run) -> dict:
        """A run's enqueue counts summed over every producing process, as they stand now."""
        board = self.session.board
        if board is not None:
            return sum_counts([r["counts"] for r in board.reports.values()])
        runtime = self.runtime
        mine = runtime is not None and runtime.recorder is not None and runtime.config.run_id == run.run_id
        return sum_counts([runtime.counts()] if mine else [])

    def on_dyno_report(self, environment, msg, **_):
        self.dyno_rows.extend(msg.data)

    @staticmethod
    def _use_user_classes(environment, names) -> None:
        """The master's classes only: a worker reports a count per class it has, and the master's user table
        would list every class of the locustfile, most with 0 users."""
        chosen = [cls for cls in environment.user_classes if cls.__name__ in (names or ())]
        if chosen:
            environment.user_classes = chosen

    def on_config_message(self, environment, msg, **_):
        data = dict(msg.data)
        self.rate_share = data.pop("rate_share")
        self._use_user_classes(environment, data.pop("user_classes", None))
        if self.producing.is_set():
            self.runtime.pacer.set_rate(self.rate_share)  # already producing for this run: only the share moved
            return
        self.config = RunConfig(**data)
        master_host = getattr(environment.parsed_options, "master_host", "127.0.0.1")
        for role, url in (("Redis", self.config.load_url or self.config.redis_url), ("ledger", self.config.ledger_url)):
            if unreachable_loopback(url, master_host):
                cannot_run(f"the master's {role} URL {redact(url)} is on the master's loopback (its embedded Redis?), out "
                      f"of this worker's reach: give the master a REDIS_URL every worker can reach")
        try:
            self.runtime = ProducerRuntime(self.config, environment)
        except UsageError as e:  # what this worker's machine lacks (a protocol's package) though the master has it
            cannot_run(str(e))
        if self.start_wanted:  # the load started before the configuration arrived (a worker joining mid-run)
            self.start_producing()

    def on_rate_message(self, environment, msg, **_):
        self.rate_share = msg.data["rate_share"]
        if self.producing.is_set():
            self.runtime.pacer.set_rate(self.rate_share)

    def set_rate(self, rate: float) -> None:
        """The run's target over every process changed (the capacity search): this process's pacer, or the
        workers' shares."""
        board = self.session.board
        if board is not None:
            board.set_rate(rate)
            return
        self.rate_share = rate
        if self.runtime is not None:
            self.runtime.pacer.set_rate(rate)

    def start_producing(self) -> None:
        if self.runtime is None or not self.runtime.config.run_id:
            self.start_wanted = True
            log.info("waiting for the run configuration from the master")
            return
        self.start_wanted = False
        self.runtime.start(self.rate_share)
        if isinstance(self.environment.runner, WorkerRunner):
            sampler = VitalsSampler("worker", ping_url=self.runtime.load_url).start()
            self.reporter = WorkerReporter(self.environment, sampler, self.runtime.counts,
                                           report_seconds(self.runtime.config))
            self.reporter.start()
        self.producing.set()

    def stop_producing(self) -> None:
        self.start_wanted = False
        self.producing.clear()
        if self.runtime is not None:
            self.runtime.stop()
        if self.reporter is not None:
            self.reporter.finish()
            self.reporter = None
        if isinstance(self.environment.runner, WorkerRunner):
            self.runtime = None  # the next test's configuration names its own run


def current(environment) -> ProducerRuntime:
    """The runtime the users of this process enqueue through (on a worker, once the master sent its config)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while state_of(environment) is None and time.monotonic() < deadline:
        gevent.sleep(0.05)  # see plugin._late_start
    state = state_of(environment)
    if state is None or not state.producing.wait(max(0.0, deadline - time.monotonic())):
        raise RuntimeError(f"no run configuration from the master within {READY_TIMEOUT}s")
    return state.runtime


def dyno_fleet(environment, factory):
    """This process's dyno fleet for the current test, created by the first dyno worker."""
    state = state_of(environment)
    if state.dyno is None:
        state.dyno = factory(environment)
    return state.dyno
