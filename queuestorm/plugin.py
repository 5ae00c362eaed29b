"""Wires queuestorm into Locust's events: options, the run's setup, producers per process, the check at the end.

Roles follow Locust's runners: a standalone run does everything; a master sets the run up, hands its options to
the workers and checks at the end; a worker only produces.
"""

import functools
import logging
import os
import sys
import time

import gevent
import gevent.event
import redis
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from . import drain_reports
from .check import check_run
from .cleanup import delete_run
from .connections import ConnectionSampler
from .connection import NO_INFO, connect, redact, server_description
from .distributed import (CONFIG_MESSAGE, HELLO_MESSAGE, RATE_MESSAGE, REPORT_MESSAGE, STOP_MESSAGE, WorkerBoard,
                          WorkerReporter)
from .drain_fleet import DrainFleet
from .dyno_report import dyno_summary, render_dyno
from .embedded import EmbeddedRedis
from .faults import FaultContext, FaultRunner, check_feasible
from .proxy import ProxyProcess
from .scenario import apply_scenario, load_faults, scenario_path
from .errors import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_PASS, UsageError
from .ledger import Ledger
from .options import RunConfig, add_arguments, apply_start_form
from .protocols import Protocol, make_protocol, require_server_version
from .report import render, render_processes, write_json
from .runtime import ProducerRuntime
from .settings import new_run_id
from .settle import wait_for_drain
from .thresholds import run_breaches
from .timeline import Timeline, sum_counts, verdict_summary
from .vitals import VitalsSampler
from . import plot, run_charts, stats_line, webui

log = logging.getLogger("queuestorm")

SUPERVISE_SECONDS = 1.0
STOP_TIMEOUT = 2.0  # seconds a user may take to finish its in-flight enqueue when the run stops
LIVE_TABLE_SECONDS = 10
READY_TIMEOUT = 30


def _fail(message: str) -> None:
    print(f"queuestorm: error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CANNOT_RUN)


class Coordinator:
    """The standalone or master side: owns the run id, the embedded server, the inline drain and the check."""

    def __init__(self, environment, config: RunConfig):
        self.environment = environment
        self.config = config
        self.embedded: EmbeddedRedis | None = None
        self.embedded_ledger: EmbeddedRedis | None = None
        self.proxy: ProxyProcess | None = None
        self.drain: DrainFleet | None = None
        self.faults: FaultRunner | None = None
        self.fault_specs: list = []
        self.connections: ConnectionSampler | None = None
        self.real_redis = False
        self.server_note = ""
        self.load_started = self.load_stopped = None
        master = isinstance(environment.runner, MasterRunner)
        self.board = WorkerBoard(environment, config) if master else None
        self.sampler = VitalsSampler("master" if master else "locust")
        self._live_table: gevent.Greenlet | None = None
        self.stats_line: stats_line.StatsLine | None = None
        self.timeline: Timeline | None = None

    def setup(self) -> None:
        c = self.config
        c.validate()
        plot.check(getattr(self.environment.parsed_options, "plot", ""))
        c.run_id = c.run_id or new_run_id()
        self.fault_specs = load_faults(c.faults) if c.faults else []
        if not c.redis_url:
            self.embedded = EmbeddedRedis(c.embedded, aof=c.aof)
            c.redis_url = self.embedded.start()
            self.server_note = f"figures are those of the embedded server: {self.embedded.description}"
            log.info("no --redis-url / REDIS_URL given: using %s", self.embedded.description)
            if self.board is not None:
                log.warning("workers on other machines cannot reach the embedded Redis on 127.0.0.1: "
                            "give the master a REDIS_URL that every worker can reach")
        if c.ledger_url == "embedded":
            self.embedded_ledger = EmbeddedRedis(c.embedded)
            c.ledger_url = self.embedded_ledger.start()
            log.info("ledger on %s", self.embedded_ledger.description)
        target = connect(c.redis_url, role="target Redis")
        require_server_version(target, self.protocol, redact(c.redis_url))
        self.target = target
        description = server_description(target)
        self.real_redis = real_redis = description != NO_INFO
        check_feasible(self.fault_specs, has_drain=c.drain == "inline",
                       managed_server=self.embedded is not None and self.embedded.kind == "redis-server",
                       ledger_on_target=c.ledger_url in ("", c.redis_url), real_redis=real_redis)
        ledger_client = target if not c.ledger_url else connect(c.ledger_url, role="ledger Redis")
        self.ledger = Ledger(ledger_client, c.run_id)
        if self.ledger.exists():  # a reused --run-id starts clean: only this run's own keys, by its prefix
            deleted = delete_run(ledger_client, c.run_id)
            if ledger_client is not target:
                deleted += delete_run(target, c.run_id)
            log.warning("run id %s existed: its %d key(s) were deleted before the test", c.run_id, deleted)
        self.ledger.create_run({"protocol": c.protocol, "queue": c.queue, "target": redact(c.redis_url),
                                "rate": c.rate, "payload_kb": c.payload_kb})
        log.info("run id %s: %s on %s, queue %r (check later: queuestorm check --run-id %s)",
                 c.run_id, c.protocol, description, c.queue, c.run_id)
        if c.latency_ms or any(spec.kind == "latency" for spec in self.fault_specs):
            self.proxy = ProxyProcess(c.redis_url, c.latency_ms, c.jitter_ms)
            c.load_url = self.proxy.url
            log.info("load and drain go through a latency proxy on port %d (%g +/- %g ms each way)",
                     self.proxy.port, c.latency_ms, c.jitter_ms)
        if c.drain == "inline":
            self.start_drain()

    def start_drain(self) -> None:
        c = self.config
        self.drain = DrainFleet(c.load_url or c.redis_url, c.ledger_url or c.redis_url, c.protocol, c.queue,
                                processes=c.drain_processes, concurrency=c.drain_concurrency, work_ms=c.work_ms,
                                visibility_timeout=c.visibility_timeout)
        self.drain.start()
        self._supervisor = gevent.spawn(self._supervise_drain)
        log.info("started %d inline drain process(es) x %d greenlets", c.drain_processes, c.drain_concurrency)

    def _supervise_drain(self) -> None:
        while True:
            gevent.sleep(SUPERVISE_SECONDS)
            for index, code in self.drain.restart_crashed():
                log.warning("inline drain process %d exited with code %s: restarted", index, code)

    def start_faults(self) -> None:
        if not self.fault_specs:
            return
        context = FaultContext(admin=connect(self.config.redis_url, role="target Redis"),
                               drain=self.drain, proxy=self.proxy, server=self.embedded)
        self.faults = FaultRunner(self.fault_specs, context, self.environment)
        self.faults.start()

    def start_sampling(self) -> None:
        if self.connections is not None:
            self.connections.stop()  # a web UI runs several tests in one process
        if self.real_redis:
            # the target's own client: one more connection would count in the peak it measures
            self.connections = ConnectionSampler(self.target, self.config.connection_limit)
            self.connections.start()

    def stop_faults(self) -> None:
        if self.faults is not None:
            self.faults.stop()

    def stop_drain(self) -> None:
        if self.drain is not None:
            self._supervisor.kill()
            self.drain.stop()

    def shutdown(self) -> None:
        self.stop_faults()
        self.stop_drain()
        for server in (self.proxy, self.embedded, self.embedded_ledger):
            if server is not None:
                server.stop()

    def start_load(self) -> None:
        self.load_started = time.monotonic()
        self.sampler.stop()  # the previous test's, in a web UI
        if self.timeline is not None:
            self.timeline.stop()
        self.sampler = VitalsSampler(self.sampler.role, ping_url=self.config.load_url or self.config.redis_url)
        self.sampler.start()
        if self.board is not None:
            self.board.start()
        self.timeline = Timeline(self.target, self.ledger.client, self.config.run_id, self.protocol,
                                 self.producer_counts, faults=lambda: self.faults.records if self.faults else [],
                                 processes=self.processes)
        self.timeline.start()
        options = self.environment.parsed_options
        if options is not None and getattr(options, "headless", False) and not getattr(options, "only_summary", False):
            self._live_table = gevent.spawn(self._print_live_table)

    def stop_load(self) -> None:
        if self._live_table is not None:
            self._live_table.kill()
            self._live_table = None
        if self.board is not None:
            self.board.stop()

    def processes(self) -> list[dict]:
        """Vitals of every process of the run: this one, the Locust workers, the drain processes."""
        rows = [self.sampler.summary()]
        if self.board is not None:
            rows += self.board.vitals()
        try:
            rows += drain_reports.read(self.ledger.client, self.config.run_id)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            log.warning("could not read the drain processes' vitals: %s", e)
        return rows

    def producer_counts(self) -> dict:
        """Enqueue counts summed over every producing process, as they stand now."""
        if self.board is not None:
            return sum_counts([r["counts"] for r in self.board.reports.values()])
        runtime = self.environment.queuestorm.runtime
        return sum_counts([runtime.counts()] if runtime is not None and runtime.recorder is not None else [])

    def _print_live_table(self) -> None:
        while True:
            gevent.sleep(LIVE_TABLE_SECONDS)
            print(render_processes(self.processes()), flush=True)

    def fleet_sections(self) -> dict:
        self.sampler.stop()
        sections = {"vitals": self.processes()}
        stats = self.environment.stats.entries.get(("enqueue", self.protocol.name))
        sections["locust_enqueue_requests"] = stats.num_requests if stats else 0
        if self.board is not None:
            sections["workers"] = self.board.workers()
            sections["workers_lost"] = [w["worker"] for w in sections["workers"] if w["state"] == "lost"]
        return sections

    def finish(self) -> None:
        """After the load stops: wait for the workers and the drain, check, print, report, set the exit code."""
        c = self.config
        self.load_stopped = time.monotonic()
        lost_producers: set[int] = set()
        if self.board is not None:
            self.board.wait_final(c.grace)
            lost_producers = self.board.lost_producers()
        if c.drain == "off":
            settled = wait_for_drain(self.target, self.protocol, self.ledger, c.grace, expect_drain=False,
                                     ignore_producers=lost_producers)
            log.info("enqueue-only run %s: %d job(s) left on %r; check later with queuestorm check --run-id %s",
                     c.run_id, settled.depth, c.queue, c.run_id)
            self.environment.process_exit_code = EXIT_PASS
            if self.timeline is not None:
                self.timeline.finish({"verdict": "unchecked", "reasons": ["--drain off"]}, self.processes())
            return
        log.info("load stopped; waiting up to %.0fs for the drain to finish", c.grace)
        settled = wait_for_drain(self.target, self.protocol, self.ledger, c.grace, ignore_producers=lost_producers)
        verdict = check_run(self.ledger.client, c.run_id, max_duplicated=c.max_duplicated, max_lost=c.max_lost)
        if self.faults is not None:
            verdict.extra["faults"] = self.faults.records
        seconds = (self.load_stopped - self.load_started) if self.load_started else 0
        verdict.extra.update({
            "target_rate": c.rate or "unlimited",
            "achieved_rate": round((verdict.enqueued + verdict.maybe_enqueued) / seconds, 1) if seconds else 0,
            "dropped": verdict.dropped,
            "depth_at_check": settled.depth,
            "drain_settled": settled.settled,
        })
        if self.drain is not None:
            verdict.extra["drain_crashes"] = len(self.drain.exit_codes)
        if self.connections is not None:
            verdict.extra.update(self.connections.stop())
        verdict.extra.update(self.fleet_sections())
        reasons = run_breaches(c, self.environment.stats, verdict.extra["achieved_rate"])
        dyno_rows = self.environment.queuestorm.dyno_rows
        if dyno_rows:
            dyno = verdict.extra["dyno"] = dyno_summary(c, dyno_rows, seconds, verdict)
            if dyno["reached_backlog_limit"]:
                reasons.append(f"{dyno['reached_backlog_limit']} reached backlog limit")
        if not settled.settled:
            reasons.append(f"the drain did not finish within --grace {c.grace:g}s ({settled.depth} job(s) still queued)")
        if reasons:
            verdict.reasons += reasons
            verdict.verdict = "fail"
        print(render(verdict, self.server_note), flush=True)
        if dyno_rows:
            print(render_dyno(verdict.extra["dyno"], passed=verdict.passed), flush=True)
        if self.timeline is not None:
            self.timeline.finish(verdict_summary(verdict.to_json()), verdict.extra.get("vitals", []))
        if c.report:
            write_json(verdict, c.report)
        self.environment.process_exit_code = EXIT_PASS if verdict.passed else EXIT_FAILED

    @functools.cached_property
    def protocol(self) -> Protocol:
        return make_protocol(self.config.protocol, self.config.queue, visibility_timeout=self.config.visibility_timeout)


_default_user_classes: list[str] = []


def default_user_classes(names: list[str]) -> None:
    """The classes a locustfile runs when neither the command line nor a scenario names any (a locustfile may
    export more, for scenarios to choose from)."""
    _default_user_classes[:] = names


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_):
    add_arguments(parser)
    worker = "--worker" in sys.argv or os.environ.get("LOCUST_MODE_WORKER", "").lower() in ("1", "true")
    if _default_user_classes and not os.environ.get("LOCUST_USER_CLASSES") and not worker:
        # a worker keeps every class of the locustfile: the master (its scenario) says which ones run
        parser.set_defaults(user_classes=list(_default_user_classes))
    path = scenario_path(sys.argv[1:])
    if path:
        try:
            apply_scenario(parser, path)
        except UsageError as e:
            _fail(str(e))


@events.init.add_listener
def _on_init(environment, runner=None, web_ui=None, **_):
    if getattr(environment, "queuestorm", None) is not None:
        return
    config = RunConfig.from_options(environment.parsed_options)
    environment.queuestorm = state = _State(environment, config)
    if isinstance(runner, WorkerRunner):
        runner.register_message(CONFIG_MESSAGE, state.on_config_message)
        runner.register_message(RATE_MESSAGE, state.on_rate_message)
        runner.register_message(STOP_MESSAGE, lambda environment, **_: gevent.spawn(environment.runner.stop))
        runner.send_message(HELLO_MESSAGE)  # asks for the configuration: a worker may join a run in progress
        return
    if not environment.stop_timeout:
        # Locust's default kills users mid-request: the ledger would have to count those enqueues as maybe-enqueued
        environment.stop_timeout = STOP_TIMEOUT
    if isinstance(runner, MasterRunner):
        from .dyno import DYNO_REPORT_MESSAGE, LIMIT_MESSAGE

        runner.register_message(DYNO_REPORT_MESSAGE, state.on_dyno_report)
        runner.register_message(LIMIT_MESSAGE, lambda environment, **_: gevent.spawn(environment.runner.quit))
    state.coordinator = Coordinator(environment, config)
    try:
        state.coordinator.setup()
    except (UsageError, redis.RedisError) as e:  # RedisError: a read-only replica, an ACL without the commands
        state.coordinator.shutdown()
        _fail(str(e))
    webui.install(environment, web_ui)
    environment.events.quit.add_listener(lambda **_: run_charts.write(environment))  # after Locust's --html
    board = state.coordinator.board
    if board is not None:
        runner.register_message(REPORT_MESSAGE, board.on_report)
        runner.register_message(HELLO_MESSAGE, board.on_hello)
        return
    state.runtime = ProducerRuntime(config, environment)


class _State:
    def __init__(self, environment, config: RunConfig):
        self.environment = environment
        self.config = config
        self.coordinator: Coordinator | None = None
        self.runtime: ProducerRuntime | None = None
        self.rate_share = config.rate
        self.reporter: WorkerReporter | None = None
        self.producing = gevent.event.Event()
        self.start_wanted = False
        self.dyno = None  # this process's DynoFleet, when it runs dyno workers
        self.dyno_rows: list[dict] = []  # every process's dyno workers, gathered where the check runs

    def on_dyno_report(self, environment, msg, **_):
        self.dyno_rows.extend(msg.data)

    def on_config_message(self, environment, msg, **_):
        data = dict(msg.data)
        self.rate_share = data.pop("rate_share")
        if self.producing.is_set():
            self.runtime.pacer.set_rate(self.rate_share)  # already producing for this run: only the share moved
            return
        self.config = RunConfig(**data)
        try:
            self.runtime = ProducerRuntime(self.config, environment)
        except UsageError as e:  # what this worker's machine lacks (a protocol's package) though the master has it
            _fail(str(e))
        if self.start_wanted:  # the load started before the configuration arrived (a worker joining mid-run)
            self.start_producing()

    def on_rate_message(self, environment, msg, **_):
        self.rate_share = msg.data["rate_share"]
        if self.producing.is_set():
            self.runtime.pacer.set_rate(self.rate_share)

    def start_producing(self) -> None:
        if self.runtime is None:
            self.start_wanted = True
            log.info("waiting for the run configuration from the master")
            return
        self.start_wanted = False
        self.runtime.start(self.rate_share)
        if isinstance(self.environment.runner, WorkerRunner):
            sampler = VitalsSampler("worker", ping_url=self.runtime.load_url).start()
            self.reporter = WorkerReporter(self.environment, sampler, self.runtime.counts)
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


def dyno_fleet(environment, factory):
    """This process's dyno fleet, created by the first dyno worker."""
    state: _State = environment.queuestorm
    if state.dyno is None:
        state.dyno = factory(environment)
    return state.dyno


def _stop_dyno(environment, state: "_State") -> None:
    from .dyno import DYNO_REPORT_MESSAGE

    state.dyno.stop_dispatch()
    state.dyno.finish()
    rows = state.dyno.rows()
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(DYNO_REPORT_MESSAGE, rows)
    else:
        state.dyno_rows.extend(rows)


def current(environment) -> ProducerRuntime:
    """The runtime the users of this process enqueue through (on a worker, once the master sent its config)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while getattr(environment, "queuestorm", None) is None and time.monotonic() < deadline:
        gevent.sleep(0.05)  # see _late_start
    state: _State | None = getattr(environment, "queuestorm", None)
    if state is None or not state.producing.wait(max(0.0, deadline - time.monotonic())):
        raise RuntimeError(f"no run configuration from the master within {READY_TIMEOUT}s")
    return state.runtime


def _late_start(environment) -> None:
    """A worker joining a run in progress gets its users while Locust is still creating its runner, before init
    fires: set up and start producing once the runner exists."""
    deadline = time.monotonic() + READY_TIMEOUT
    while environment.runner is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
    _on_init(environment, environment.runner)
    environment.queuestorm.start_producing()


@events.test_start.add_listener
def _on_test_start(environment, **_):
    if getattr(environment, "queuestorm", None) is None:
        gevent.spawn(_late_start, environment)
        return
    state: _State = environment.queuestorm
    runner = environment.runner
    if state.coordinator is not None:
        _apply_start_form(environment, state)
        state.coordinator.start_load()
        try:
            state.coordinator.start_faults()
        except UsageError as e:  # the target refused the faults' admin connection: the test cannot run as asked
            print(f"queuestorm: error: {e}", file=sys.stderr, flush=True)
            environment.process_exit_code = EXIT_CANNOT_RUN
            gevent.spawn(environment.runner.quit)
            return
        state.coordinator.start_sampling()
        state.coordinator.stats_line = stats_line.start(environment, state.coordinator.ledger)
        if state.config.warmup:
            gevent.spawn_later(state.config.warmup, _end_warmup, environment)
    if not isinstance(runner, MasterRunner):
        state.start_producing()


def _apply_start_form(environment, state: "_State") -> None:
    try:
        changed = apply_start_form(state.config, environment.parsed_options)
    except UsageError as e:
        log.error("start form: %s: this test keeps the previous values", e)
        return
    if changed:
        state.rate_share = state.config.rate
        log.info("start form: this test runs with %s", ", ".join(f"--{n.replace('_', '-')} {getattr(state.config, n)}"
                                                                for n in changed))


def _end_warmup(environment) -> None:
    environment.runner.stats.reset_all()
    log.info("warm-up over: Locust statistics reset")


@events.test_stop.add_listener
def _on_test_stop(environment, **_):
    state: _State | None = getattr(environment, "queuestorm", None)
    if state is None:
        return
    if state.coordinator is not None:
        state.coordinator.stop_faults()  # first: producers flush their ledger to a server back to normal
        state.coordinator.stop_load()
    if state.dyno is not None:
        _stop_dyno(environment, state)
    if not isinstance(environment.runner, MasterRunner):
        state.stop_producing()
    if isinstance(environment.runner, MasterRunner):
        # a headless master quits without stopping its workers first: their producers must close before the check
        environment.runner.send_message(STOP_MESSAGE)
    if state.coordinator is not None:
        try:
            state.coordinator.finish()
        except (UsageError, redis.RedisError) as e:
            print(f"queuestorm: error: the loss check could not run: {e}", file=sys.stderr, flush=True)
            environment.process_exit_code = EXIT_CANNOT_RUN
        finally:
            stats_line.stop(state.coordinator.stats_line)  # its last line, after the check
            state.coordinator.stop_drain()


@events.quitting.add_listener
def _on_quitting(environment, **_):
    state = getattr(environment, "queuestorm", None)
    if state is not None and state.coordinator is not None:
        state.coordinator.shutdown()
