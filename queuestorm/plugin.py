"""Wires queuestorm into Locust's events: options, the run's setup, producers per process, the check at the end.

Roles follow Locust's runners: a standalone run does everything; a master sets the run up, hands its options to
the workers and checks at the end; a worker only produces.
"""

import logging
import sys
import time

import gevent
import redis
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from .check import check_run
from .connection import NO_INFO, connect, redact, server_description
from .drain_fleet import DrainFleet
from .embedded import EmbeddedRedis
from .faults import FaultContext, FaultRunner, check_feasible
from .proxy import ProxyProcess
from .scenario import load_faults
from .errors import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_PASS, UsageError
from .ledger import Ledger
from .options import RunConfig, add_arguments
from .protocols import Protocol, make_protocol, require_server_version
from .report import render, write_json
from .runtime import ProducerRuntime
from .settings import new_run_id
from .settle import wait_for_drain
from . import stats_line

log = logging.getLogger("queuestorm")

CONFIG_MESSAGE = "queuestorm_config"
STOP_MESSAGE = "queuestorm_stop"
SUPERVISE_SECONDS = 1.0
STOP_TIMEOUT = 2.0  # seconds a user may take to finish its in-flight enqueue when the run stops


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
        self.server_note = ""
        self.load_started = self.load_stopped = None
        self.stats_line: stats_line.StatsLine | None = None

    def setup(self) -> None:
        c = self.config
        c.validate()
        c.run_id = c.run_id or new_run_id()
        self.fault_specs = load_faults(c.faults) if c.faults else []
        if not c.redis_url:
            self.embedded = EmbeddedRedis(c.embedded, aof=c.aof)
            c.redis_url = self.embedded.start()
            self.server_note = f"figures are those of the embedded server: {self.embedded.description}"
            log.info("no --redis-url / REDIS_URL given: using %s", self.embedded.description)
        if c.ledger_url == "embedded":
            self.embedded_ledger = EmbeddedRedis(c.embedded)
            c.ledger_url = self.embedded_ledger.start()
            log.info("ledger on %s", self.embedded_ledger.description)
        target = connect(c.redis_url, role="target Redis")
        require_server_version(target, self.protocol, redact(c.redis_url))
        self.target = target
        real_redis = server_description(target) != NO_INFO
        check_feasible(self.fault_specs, has_drain=c.drain == "inline",
                       managed_server=self.embedded is not None and self.embedded.kind == "redis-server",
                       ledger_on_target=c.ledger_url in ("", c.redis_url), real_redis=real_redis)
        ledger_client = target if not c.ledger_url else connect(c.ledger_url, role="ledger Redis")
        self.ledger = Ledger(ledger_client, c.run_id)
        self.ledger.create_run({"protocol": c.protocol, "queue": c.queue, "target": redact(c.redis_url),
                                "rate": c.rate, "payload_kb": c.payload_kb})
        log.info("run id %s: %s on %s, queue %r (check later: queuestorm check --run-id %s)",
                 c.run_id, c.protocol, server_description(target), c.queue, c.run_id)
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

    def finish(self) -> None:
        """After the load stops: wait for the drain, check, print, report, set the exit code."""
        c = self.config
        self.load_stopped = time.monotonic()
        if c.drain == "off":
            settled = wait_for_drain(self.target, self.protocol, self.ledger, c.grace, expect_drain=False)
            log.info("enqueue-only run %s: %d job(s) left on %r; check later with queuestorm check --run-id %s",
                     c.run_id, settled.depth, c.queue, c.run_id)
            self.environment.process_exit_code = EXIT_PASS
            return
        log.info("load stopped; waiting up to %.0fs for the drain to finish", c.grace)
        settled = wait_for_drain(self.target, self.protocol, self.ledger, c.grace)
        verdict = check_run(self.ledger.client, c.run_id, max_duplicated=c.max_duplicated)
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
        if not settled.settled:
            verdict.reasons.append(f"the drain did not finish within --grace {c.grace:g}s "
                                   f"({settled.depth} job(s) still queued)")
            verdict.verdict = "fail"
        print(render(verdict, self.server_note), flush=True)
        if c.report:
            write_json(verdict, c.report)
        self.environment.process_exit_code = EXIT_PASS if verdict.passed else EXIT_FAILED

    @property
    def protocol(self) -> Protocol:
        return make_protocol(self.config.protocol, self.config.queue, visibility_timeout=self.config.visibility_timeout)


@events.init_command_line_parser.add_listener
def _add_arguments(parser, **_):
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment, runner=None, **_):
    if getattr(environment, "queuestorm", None) is not None:
        return
    config = RunConfig.from_options(environment.parsed_options)
    environment.queuestorm = state = _State(environment, config)
    if isinstance(runner, WorkerRunner):
        runner.register_message(CONFIG_MESSAGE, state.on_config_message)
        runner.register_message(STOP_MESSAGE, lambda environment, **_: gevent.spawn(environment.runner.stop))
        return
    if not environment.stop_timeout:
        # Locust's default kills users mid-request: the ledger would have to count those enqueues as maybe-enqueued
        environment.stop_timeout = STOP_TIMEOUT
        if config.drain == "users":  # the consuming users finish the queue when the run stops
            environment.stop_timeout = max(STOP_TIMEOUT, config.grace)
    state.coordinator = Coordinator(environment, config)
    try:
        state.coordinator.setup()
    except UsageError as e:
        state.coordinator.shutdown()
        _fail(str(e))
    state.runtime = ProducerRuntime(config, environment)


class _State:
    def __init__(self, environment, config: RunConfig):
        self.environment = environment
        self.config = config
        self.coordinator: Coordinator | None = None
        self.runtime: ProducerRuntime | None = None
        self.rate_share = config.rate

    def on_config_message(self, environment, msg, **_):
        data = dict(msg.data)
        self.rate_share = data.pop("rate_share")
        self.config = RunConfig(**data)
        self.runtime = ProducerRuntime(self.config, environment)


def current(environment) -> ProducerRuntime:
    """The runtime the users of this process enqueue through (on a worker, set once the master sent its config)."""
    state: _State = environment.queuestorm
    return state.runtime


@events.test_start.add_listener
def _on_test_start(environment, **_):
    state: _State = environment.queuestorm
    runner = environment.runner
    if state.coordinator is not None:
        state.coordinator.load_started = time.monotonic()
        state.coordinator.start_faults()
        state.coordinator.stats_line = stats_line.start(environment, state.coordinator.ledger)
    if isinstance(runner, MasterRunner):
        workers = max(runner.worker_count, 1)
        message = dict(state.config.to_message(), rate_share=state.config.rate / workers)
        runner.send_message(CONFIG_MESSAGE, message)
        return
    if state.runtime is None:
        log.error("no run configuration received from the master")
        return
    state.runtime.start(state.rate_share)


@events.test_stop.add_listener
def _on_test_stop(environment, **_):
    state: _State = environment.queuestorm
    if state.coordinator is not None:
        state.coordinator.stop_faults()  # first: producers flush their ledger to a server back to normal
    if state.runtime is not None and not isinstance(environment.runner, MasterRunner):
        state.runtime.stop()
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
