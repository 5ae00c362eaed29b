"""A standalone or master process's session, and its runs: one Run per test (each web UI test is its own run).

Session   set up once when Locust starts: the embedded servers, the target's checks, the fault schedule, the proxy;
          torn down last, after the final verdict is printed.
Run       one test: setup (run id, fresh ledger, inline drain fleet, samplers, faults) → load → settle → check →
          report → teardown, each phase a method; the verdict is computed once, by verdict.judge.
"""

import dataclasses
import logging
import os
import sys
import tempfile
import time

import gevent
import redis

from ..ledger import drain_reports
from ..observe import stats_line
from ..model import verdict as verdicts
from .capacity_driver import CapacityDriver
from ..ledger.check import check_run
from ..ledger.cleanup import delete_run
from ..redis.connection import NETWORK_ERRORS, NO_INFO, connect, describe_redis_error, redact, server_description
from ..observe.connection_sampler import ConnectionSampler
from ..drain.fleet import DrainFleet
from ..report.dyno_tables import dyno_summary, render_dyno
from ..redis.embedded import EmbeddedRedis
from ..redis.embedded_topology import make_embedded, server_kind
from ..model.errors import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_PASS, UsageError
from ..faults.kinds import FaultContext, FaultRunner, check_feasible, check_server_takes
from ..ledger.writer import Ledger
from ..model.options import RunConfig
from .config import validate
from ..model.environment import state_of
from .output_paths import check_output_paths
from ..faults.partitions import has_partitions, make_proxy
from ..report.plot import check as check_plot
from ..protocols.preflight import ready_for, require_permissions
from ..protocols import make_protocol, require_server_version
from ..redis.proxy import ProxyProcess
from ..report.console import grid, render, write_json
from .scenario import load_faults
from ..model.settings import new_run_id
from ..drain.settle import Settled, wait_for_drain
from .thresholds import run_breaches
from ..observe.timeline import Timeline, sum_counts, verdict_summary
from ..observe.vitals import VitalsSampler
from ..model.periodic import every

log = logging.getLogger("queuestorm")

SUPERVISE_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
QUICK_STOP_SECONDS = 1.0
FLEET_READY_SECONDS = 15.0


class Session:
    """`board`: the master's WorkerBoard, None elsewhere. `counts_of(run)` sums the producers' counts of a run."""

    def __init__(self, environment, config: RunConfig, *, board=None, role: str = "locust", counts_of=None):
        self.environment = environment
        self.config = config
        self.board = board
        self.role = role
        self.counts_of = counts_of or (lambda run: sum_counts([]))
        self.embedded: EmbeddedRedis | None = None
        self.embedded_ledger: EmbeddedRedis | None = None
        self.proxy: ProxyProcess | None = None
        self.fault_specs: list = []
        self.server_note = ""
        self.real_redis = False
        self.runs: list[Run] = []
        options = environment.parsed_options
        self.defer_output = bool(getattr(options, "headless", False))
        self._deferred: list[str] = []  # a headless run's verdict is printed at the very end, after Locust's tables

    @property
    def current(self) -> "Run | None":
        """The newest run that started its load: the one a web UI shows and an interrupt ends."""
        started = [run for run in self.runs if run.load_started is not None]
        return started[-1] if started else None

    @property
    def prepared(self) -> "Run | None":
        """The run set up ahead of the next test (its drains already consuming), if any."""
        run = self.runs[-1] if self.runs else None
        return run if run is not None and run.load_started is None and run.phase == "setup" else None

    def setup(self) -> None:
        c = self.config
        validate(c)
        options = self.environment.parsed_options
        check_plot(getattr(options, "plot", "") or "")
        check_output_paths(options)
        self.fault_specs = load_faults(c.faults) if c.faults else []
        if not c.redis_url:
            self.embedded = make_embedded(c.embedded, aof=c.aof)
        check_feasible(self.fault_specs, has_drain=c.drain == "inline",
                       managed_server=self.embedded is not None and self.embedded.kind == "redis-server",
                       ledger_on_target=c.ledger_url in ("", c.redis_url))
        if self.embedded is not None:
            c.redis_url = self.embedded.start()
            self.server_note = f"figures are those of the embedded server: {self.embedded.description}"
            log.info("no --redis-url / REDIS_URL given: using %s", self.embedded.description)
            if self.board is not None:
                log.warning("workers on other machines cannot reach the embedded Redis on 127.0.0.1: "
                            "give the master a REDIS_URL that every worker can reach")
        if c.ledger_url == "embedded":
            self.embedded_ledger = EmbeddedRedis(server_kind(c.embedded))
            c.ledger_url = self.embedded_ledger.start()
            log.info("ledger on %s", self.embedded_ledger.description)
        self.target = connect(c.redis_url, role="target Redis")
        self.protocol = make_protocol(c.protocol, c.queue, visibility_timeout=c.visibility_timeout)
        require_server_version(self.target, self.protocol, redact(c.redis_url))
        ledger_url = c.ledger_url or c.redis_url
        ready_for(self.target, self.protocol, c.redis_url, "enqueue", ledger_url)
        if c.drain == "inline":  # a refused inline drain would exit at once, restarted again and again
            require_permissions(self.target, self.protocol, c.redis_url, "drain", ledger_url=ledger_url)
        self.description = server_description(self.target)
        self.real_redis = self.description != NO_INFO
        check_server_takes(self.fault_specs, real_redis=self.real_redis)
        self.ledger_client = self.target if not c.ledger_url else connect(c.ledger_url, role="ledger Redis")
        if (c.latency_ms or any(spec.kind == "latency" for spec in self.fault_specs)
                or has_partitions(self.fault_specs)):
            self.proxy = make_proxy(c.redis_url, c.latency_ms, c.jitter_ms, self.fault_specs)
            c.load_url = self.proxy.url
            log.info("load and drain go through a latency proxy on port %d (%g +/- %g ms each way)",
                     self.proxy.port, c.latency_ms, c.jitter_ms)
        log.info("%s on %s, queue %r", c.protocol, self.description, c.queue)

    def next_run_id(self) -> str:
        given = self.config.run_id
        if not given:
            return new_run_id()
        return given if not self.runs else f"{given}.{len(self.runs) + 1}"

    def prepare_run(self, wait: bool = True) -> "Run":
        """Set up the next test's run now, so that its inline drains are consuming when its load starts; `wait`
        for them (at init: before Locust's --run-time clock starts)."""
        run = Run(self, dataclasses.replace(self.config, run_id=self.next_run_id()))
        self.runs.append(run)
        run.setup()
        if wait:
            run.wait_for_fleet()
        return run

    def start_run(self) -> "Run":
        """A test starts: the prepared run (with the start form's values of this test), or a new one."""
        run = self.prepared or self.prepare_run()
        prepared_with = run.config
        run.config = dataclasses.replace(self.config, run_id=run.run_id, load_url=run.config.load_url)
        if (prepared_with.rate, prepared_with.payload_kb) != (run.config.rate, run.config.payload_kb):
            # the ledger's meta was written when the run was prepared: it says what this test runs with
            run.ledger.create_run({"rate": run.config.rate, "payload_kb": run.config.payload_kb})
        run.start_load()
        return run

    def failed_to_start(self) -> None:
        run = self.runs[-1]
        run.exit_code = EXIT_CANNOT_RUN
        run.teardown()

    def say(self, text: str) -> None:
        if self.defer_output:
            self._deferred.append(text)
        else:
            print(text, flush=True)

    def print_deferred(self) -> None:
        """The last lines on screen: the verdicts a headless session kept, or one line per test of a web UI session."""
        for text in self._deferred:
            print(text, flush=True)
        finished = [run for run in self.runs if run.verdict is not None]
        if not self.defer_output and len(finished) > 1:
            print("queuestorm: " + "; ".join(f"run {run.run_id}: {run.verdict_line()}" for run in finished), flush=True)

    def exit_code(self) -> int:
        """The worst of every run's: a FAIL is never followed by exit 0."""
        codes = [run.exit_code for run in self.runs if run.exit_code is not None]
        return max(codes) if codes else EXIT_PASS

    def shutdown(self) -> None:
        prepared = self.prepared
        for run in self.runs:
            run.teardown()
        if prepared is not None:  # never started: its ledger holds nothing but its meta
            delete_run(self.ledger_client, prepared.run_id)
        for server in (self.proxy, self.embedded, self.embedded_ledger):
            if server is not None:
                server.stop()


class Run:
    def __init__(self, session: Session, config: RunConfig):
        self.session = session
        self.config = config
        self.run_id = config.run_id
        self.environment = session.environment
        self.protocol = session.protocol
        self.target = session.target
        self.phase = "new"
        self.ledger = Ledger(session.ledger_client, self.run_id)
        self.fleet: DrainFleet | None = None
        self.faults: FaultRunner | None = None
        self.connections: ConnectionSampler | None = None
        self.timeline: Timeline | None = None
        self.stats_line: stats_line.StatsLine | None = None
        self.capacity: CapacityDriver | None = None
        self.sampler = VitalsSampler(session.role, ping_url=config.load_url or config.redis_url)
        self.verdict = None
        self.exit_code: int | None = None
        self.load_started = self.load_stopped = None
        self._greenlets: list[gevent.Greenlet] = []
        self._finisher: gevent.Greenlet | None = None
        self._cancelled = False
        self._fleet_ready = False

    # setup ------------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        c = self.config
        self.phase = "setup"
        if self.ledger.exists():  # a reused --run-id starts clean: only this run's own keys, by its prefix
            deleted = delete_run(self.ledger.client, self.run_id)
            if self.ledger.client is not self.target:
                deleted += delete_run(self.target, self.run_id)
            log.warning("run id %s existed: its %d key(s) were deleted before the test", self.run_id, deleted)
        self.ledger.create_run({"protocol": c.protocol, "queue": c.queue, "target": redact(c.redis_url),
                                "rate": c.rate, "payload_kb": c.payload_kb})
        log.info("run id %s: %s on %s, queue %r (check later: queuestorm check --run-id %s)",
                 self.run_id, c.protocol, self.session.description, c.queue, self.run_id)
        if c.drain == "inline":
            self._start_fleet()

    def _start_fleet(self) -> None:
        c = self.config
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        log_path = None if verbose else os.path.join(tempfile.gettempdir(), f"queuestorm-drain-{self.run_id}.log")
        drain_url = getattr(self.session.proxy, "drain_url", None)  # the drains' own proxy, for partition faults
        self.fleet = DrainFleet(drain_url or c.load_url or c.redis_url, c.ledger_url or c.redis_url, c.protocol, c.queue,
                                processes=c.drain_processes, concurrency=c.drain_concurrency, work_ms=c.work_ms,
                                visibility_timeout=c.visibility_timeout, run_id=self.run_id,
                                consumer_prefix=f"inline-{os.getpid()}", log_path=log_path)
        self.fleet.start()
        self._greenlets.append(every(SUPERVISE_SECONDS, self._restart_crashed_drains))
        log.info("started %d inline drain process(es) x %d greenlets%s", c.drain_processes, c.drain_concurrency,
                 f" (their stats lines: {log_path})" if log_path else "")

    def wait_for_fleet(self) -> None:
        """The load starts once every inline drain is consuming (each announces itself in the run's drain reports):
        otherwise the first seconds' end-to-end latency is the drains' start-up, not the queue's."""
        deadline = time.monotonic() + FLEET_READY_SECONDS
        while self.fleet is not None and not self._fleet_ready and time.monotonic() < deadline:
            try:
                if len(drain_reports.read(self.ledger.client, self.run_id)) >= self.config.drain_processes:
                    self._fleet_ready = True
                    return
            except NETWORK_ERRORS:
                pass
            gevent.sleep(0.05)
        if self.fleet is not None and not self._fleet_ready:
            log.warning("the inline drains did not report within %gs: the load starts anyway", FLEET_READY_SECONDS)

    def _restart_crashed_drains(self) -> None:
        for index, code in self.fleet.restart_crashed():
            log.warning("inline drain process %d exited with code %s: restarted as the same consumer", index, code)

    # load -------------------------------------------------------------------------------------------------------

    def start_load(self) -> None:
        """The test started: samplers, timeline, faults, the live progress line."""
        c = self.config
        self.wait_for_fleet()
        self.phase = "load"
        self.load_started = time.monotonic()
        if c.find_capacity:
            state = state_of(self.environment)
            self.capacity = CapacityDriver(self, state.set_rate, self._stop_test, state.stats_window)
            c.rate = self.capacity.first_rate
        self.sampler.start()
        if self.session.board is not None:
            self.session.board.config = c
            self.session.board.start()
        self.timeline = Timeline(self.target, self.ledger.client, self.run_id, self.protocol,
                                 lambda: self.session.counts_of(self),
                                 faults=lambda: self.faults.records if self.faults else [], processes=self.processes)
        self.timeline.start()
        if self.session.real_redis:
            # the target's own client: one more connection would count in the peak it measures
            self.connections = ConnectionSampler(self.target, c.connection_limit)
            self.connections.start()
        self.stats_line = stats_line.start(self.environment, self.ledger)
        if c.warmup:
            self._greenlets.append(gevent.spawn_later(c.warmup, self._end_warmup))
        options = self.environment.parsed_options
        if getattr(options, "headless", False) and not getattr(options, "only_summary", False):
            self._greenlets.append(every(PROGRESS_SECONDS, self._print_progress))
        self._start_faults()
        if self.capacity is not None:
            self.capacity.start()

    def _stop_test(self) -> None:
        """The capacity search has its answer: the test ends as at the end of --run-time."""
        runner = self.environment.runner
        headless = getattr(self.environment.parsed_options, "headless", False)
        gevent.spawn(runner.quit if headless else runner.stop)

    def _start_faults(self) -> None:
        if not self.session.fault_specs:
            return
        context = FaultContext(admin=connect(self.config.redis_url, role="target Redis"), drain=self.fleet,
                               proxy=self.session.proxy, server=self.session.embedded, run_id=self.run_id)
        self.faults = FaultRunner(self.session.fault_specs, context, self.environment)
        self.faults.start()

    def _end_warmup(self) -> None:
        self.environment.runner.stats.reset_all()
        log.info("warm-up over: Locust statistics reset")

    def _print_progress(self) -> None:
        point = self.timeline.points[-1] if self.timeline and self.timeline.points else None
        if point is not None:
            print(progress_line(point), flush=True)

    def stop_load(self) -> None:
        """The users stopped (or are stopping): faults first, so producers flush to a server back to normal."""
        if self.capacity is not None:
            self.capacity.stop()
        if self.faults is not None:
            self.faults.stop()
        if self.session.board is not None:
            self.session.board.stop()
        self.load_stopped = time.monotonic()

    # settle, check, report --------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Everything after the load: in a greenlet of its own, so that an interrupt can cut it short."""
        if self._finisher is None:
            self._finisher = gevent.spawn(self._finish)
        self._finisher.join()

    @property
    def finishing(self) -> bool:
        return self._finisher is not None and not self._finisher.dead

    def cancel(self, why: str) -> None:
        """A second interrupt: stop settling or checking at once; the check is skipped."""
        self._cancelled = True
        if self._finisher is not None and not self._finisher.dead:
            self._finisher.kill()
        if self.exit_code is None:
            self.exit_code = EXIT_CANNOT_RUN
            print(f"queuestorm: {why}: the loss check of run {self.run_id} was skipped "
                  f"(check later: queuestorm check --run-id {self.run_id})", file=sys.stderr, flush=True)
        self.teardown(quick=True)

    def _finish(self) -> None:
        try:
            settled = self.settle()
            self._stop_fleet()
            if self.config.drain == "off":
                self._report_unchecked(settled)
                return
            self.phase = "check"
            v = self.check(settled)
            self.phase = "report"
            self.report(v)
        except UsageError as e:
            self._could_not_check(str(e))
        except (redis.RedisError, OSError) as e:
            self._could_not_check(describe_redis_error(e, self.config.redis_url, "Redis"))
        finally:
            if not self._cancelled:
                self.teardown()

    def _could_not_check(self, why: str) -> None:
        print(f"queuestorm: error: the loss check of run {self.run_id} could not run: {why}", file=sys.stderr,
              flush=True)
        self.exit_code = EXIT_CANNOT_RUN

    def settle(self) -> Settled:
        c = self.config
        self.phase = "settle"
        board = self.session.board
        lost_producers: set[int] = set()
        if board is not None:
            board.wait_final(c.grace)
            lost_producers = board.lost_producers()
        if c.drain != "off":
            log.info("load stopped; waiting up to %gs for every job to be accounted for", c.grace)
        return wait_for_drain(self.target, self.protocol, self.ledger, c.grace, expect_drain=c.drain != "off",
                              ignore_producers=lost_producers, sleep=gevent.sleep,
                              progress=lambda line: print(f"queuestorm: {line}", flush=True))

    def _stop_fleet(self) -> None:
        """Before the check: each drain finishes and acknowledges what it holds, so nothing is in a drain's hands."""
        gevent.killall(self._greenlets)
        self._greenlets = []
        if self.fleet is not None:
            self.fleet.stop()

    def check(self, settled: Settled):
        c = self.config
        lookup = connect(c.redis_url, role="target Redis", single=False)
        v = check_run(self.ledger.client, self.run_id, max_duplicated=c.max_duplicated, max_lost=c.max_lost,
                      target=lookup, protocol=self.protocol)
        seconds = (self.load_stopped - self.load_started) if self.load_started and self.load_stopped else 0
        v.extra.update({
            "target_rate": "capacity search" if self.capacity is not None else c.rate or "unlimited",
            "achieved_rate": round((v.enqueued + v.maybe_enqueued) / seconds, 1) if seconds else 0,
            "dropped": v.dropped,
            "depth_at_check": settled.depth,
            "drain_settled": settled.settled,
            "settle_waited_s": settled.waited_s,
        })
        if self.faults is not None:
            v.extra["faults"] = self.faults.records
        if self.fleet is not None:
            v.extra["drain_crashes"] = len(self.fleet.exit_codes)
        if self.connections is not None:
            v.extra.update(self.connections.stop())
        v.extra.update(self.fleet_sections())
        breaches = run_breaches(c, self.environment.stats, v.extra["achieved_rate"])
        if self.capacity is not None:  # the thresholds judged each step; failing steps are the search's means
            v.extra["capacity"] = self.capacity.result()
            breaches = []
        dyno_rows = state_of(self.environment).dyno_rows
        if dyno_rows:
            dyno = v.extra["dyno"] = dyno_summary(c, dyno_rows, seconds, v)
            if dyno["reached_backlog_limit"] and self.capacity is None:
                breaches.append(f"{dyno['reached_backlog_limit']} reached backlog limit")
        return verdicts.judge(v, settled=settled, grace=c.grace, breaches=breaches)

    def report(self, v) -> None:
        self.verdict = v
        self.exit_code = EXIT_PASS if v.passed else EXIT_FAILED
        if self.stats_line is not None:
            self.stats_line.stop(final=True)  # its last line, from the checked ledger
            self.stats_line = None
        if self.timeline is not None:
            self.timeline.finish(dict(verdict_summary(v.to_json()), run_id=self.run_id), v.extra.get("vitals", []))
        if self.config.report:
            write_json(v, self.config.report)
        text = render(v, self.session.server_note)
        if v.extra.get("dyno"):
            text = render_dyno(v.extra["dyno"], passed=v.passed) + "\n" + text
        if self.capacity is not None:
            text = self.capacity.render(grid) + "\n" + text
        self.session.say(text)

    def verdict_line(self) -> str:
        v = self.verdict
        return "PASS" if v.passed else "FAIL: " + "; ".join(v.reasons)

    def _report_unchecked(self, settled: Settled) -> None:
        log.info("enqueue-only run %s: %d job(s) left on %r; check later with queuestorm check --run-id %s",
                 self.run_id, settled.depth, self.config.queue, self.run_id)
        self.exit_code = EXIT_PASS
        if self.timeline is not None:
            self.timeline.finish({"verdict": "unchecked", "reasons": ["--drain off"], "run_id": self.run_id},
                                 self.processes())

    def processes(self) -> list[dict]:
        """Vitals of every process of the run: this one, the Locust workers, the drain processes."""
        rows = [self.sampler.summary()]
        if self.session.board is not None:
            rows += self.session.board.vitals()
        try:
            rows += drain_reports.read(self.ledger.client, self.run_id)
        except NETWORK_ERRORS as e:
            log.warning("could not read the drain processes' vitals: %s", e)
        return rows

    def fleet_sections(self) -> dict:
        self.sampler.stop()
        sections = {"vitals": self.processes()}
        stats = self.environment.stats.entries.get(("enqueue", self.protocol.name))
        sections["locust_enqueue_requests"] = stats.num_requests if stats else 0
        board = self.session.board
        if board is not None:
            sections["workers"] = board.workers()
            sections["workers_lost"] = [w["worker"] for w in sections["workers"] if w["state"] == "lost"]
        return sections

    # teardown ---------------------------------------------------------------------------------------------------

    def teardown(self, quick: bool = False) -> None:
        """Idempotent: every greenlet, process and sampler of this run stopped; `quick` gives the drains a second."""
        if self.phase == "done":
            return
        gevent.killall(self._greenlets)
        self._greenlets = []
        if self.faults is not None:
            self.faults.stop()
        if self.fleet is not None:
            self.fleet.stop(QUICK_STOP_SECONDS if quick else None)
        if self.connections is not None:
            self.connections.stop()
        if self.stats_line is not None:
            self.stats_line.stop(final=False)
        if self.timeline is not None:
            self.timeline.stop()
        self.sampler.stop()
        self.phase = "done"


def progress_line(point: dict) -> str:
    e2e = (point.get("e2e_ms") or {}).get("p95")
    return (f"queuestorm: {point['t']:.0f}s  depth {point['depth']}  enqueue {point['enqueue_rate']:.0f}/s  "
            f"drain {point['drain_rate']:.0f}/s  unaccounted {point['unaccounted']}  "
            f"e2e p95 {'-' if e2e is None else f'{e2e:.1f} ms'}")
