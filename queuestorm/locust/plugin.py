"""Wires queuestorm into Locust's events. Roles follow Locust's runners: a standalone process or a master owns a
Session (run/session.py) and one Run per test; a worker only produces, for the run the master names.

Locust's events drive the run's phases: init → Session.setup; test_start → Run.setup + start_load; test_stop →
stop_load, then settle, check and report; quitting (Ctrl-C, SIGTERM, the end of --run-time) → a test still running
is stopped and finished first, a second interrupt skips the check; quit (after Locust's final tables) → the
verdict, then the embedded servers go down, last.
"""

import logging
import os
import signal
import sys
import time

import gevent
import redis
from locust import events
from locust.runners import STATE_INIT, MasterRunner, WorkerRunner

from ..report import webui, charts as run_charts
from .start_form import derive_start_form_options_once
from ..redis.connection import describe_redis_error, redact
from .distributed import (CONFIG_MESSAGE, DYNO_REPORT_MESSAGE, HELLO_MESSAGE, LIMIT_MESSAGE, RATE_MESSAGE,
                          REPORT_MESSAGE, STOP_MESSAGE, WorkerBoard)
from ..model.environment import attach, state_of
from ..model.errors import UsageError
from ..model.options import RunConfig
from ..run.config import apply_start_form
from .options import add_arguments
from ..run.session import Session
from .exit import cannot_run
from .state import READY_TIMEOUT, State
from ..produce.runtime import ProducerRuntime
from ..run.scenario import apply_scenario
from .config_files import scenario_path

log = logging.getLogger("queuestorm")

STOP_TIMEOUT = 2.0  # seconds a user may take to finish its in-flight enqueue when the run stops


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
            cannot_run(str(e))


def _interrupt_main_greenlet(environment) -> None:
    """Ctrl-C as Locust expects it, a KeyboardInterrupt in the main greenlet, and there only: Python's own handler
    raises it in whatever greenlet runs at that instant — a user between sending an enqueue and recording it, whose
    job would then complete as never enqueued. A headless master still waiting for --expect-workers is outside
    Locust's handling of Ctrl-C (a traceback, the workers already there left running): nothing ran, so it tells
    them to quit, stops its drains and embedded server, and exits 0, as an idle web UI does."""
    runner = environment.runner
    if isinstance(runner, MasterRunner) and runner.state == STATE_INIT and environment.parsed_options.headless:
        log.info("interrupted while waiting for --expect-workers: nothing ran, nothing to check")
        runner.quit()
        _on_quit(environment)
        gevent.get_hub().parent.throw(SystemExit(0))
        return
    gevent.get_hub().parent.throw(KeyboardInterrupt)


@events.init.add_listener
def _on_init(environment, runner=None, web_ui=None, **_):
    if state_of(environment) is not None:
        return
    gevent.signal_handler(signal.SIGINT, _interrupt_main_greenlet, environment)
    config = RunConfig.from_options(environment.parsed_options)
    state = State(environment, config)
    attach(environment, state)
    if isinstance(runner, WorkerRunner):
        runner.register_message(CONFIG_MESSAGE, state.on_config_message)
        runner.register_message(RATE_MESSAGE, state.on_rate_message)
        runner.register_message(STOP_MESSAGE, lambda environment, **_: gevent.spawn(environment.runner.stop))
        runner.send_message(HELLO_MESSAGE)  # asks for the configuration: a worker may join a run in progress
        return
    if not environment.stop_timeout:
        # Locust's default kills users mid-request: the ledger would have to count those enqueues as maybe-enqueued
        environment.stop_timeout = STOP_TIMEOUT
    board = None
    if isinstance(runner, MasterRunner):
        board = WorkerBoard(environment, config)
        # registered before the setup below: a worker's hello may arrive while the master starts its servers
        runner.register_message(REPORT_MESSAGE, board.on_report)
        runner.register_message(HELLO_MESSAGE, board.on_hello)
        runner.register_message(DYNO_REPORT_MESSAGE, state.on_dyno_report)
        runner.register_message(LIMIT_MESSAGE, lambda environment, **_: gevent.spawn(environment.runner.quit))
    state.session = session = Session(environment, config, board=board,
                                      role="master" if board is not None else "locust", counts_of=state.counts_of)
    try:
        session.setup()
    except UsageError as e:
        session.shutdown()
        cannot_run(str(e))
    except (redis.RedisError, OSError) as e:
        session.shutdown()
        cannot_run(describe_redis_error(e, config.redis_url, "target Redis"))
    if board is not None:
        board.open()
    try:
        session.prepare_run()
    except (UsageError, redis.RedisError) as e:
        session.shutdown()
        cannot_run(str(e))
    if not environment.host:
        environment.host = redact(config.redis_url)  # what the start form's Host field shows: the Redis under test
    if web_ui is not None:
        derive_start_form_options_once()
    webui.install(environment, web_ui)
    environment.events.quit.add_listener(lambda **_: _on_quit(environment))


def _stop_dyno(environment, state: State) -> None:
    fleet, state.dyno = state.dyno, None
    fleet.stop_dispatch()
    fleet.finish()
    rows = fleet.rows()
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(DYNO_REPORT_MESSAGE, rows)
    else:
        state.dyno_rows.extend(rows)


def _late_start(environment) -> None:
    """A worker joining a run in progress gets its users while Locust is still creating its runner, before init
    fires: set up and start producing once the runner exists."""
    deadline = time.monotonic() + READY_TIMEOUT
    while environment.runner is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
    _on_init(environment, environment.runner)
    state_of(environment).start_producing()


@events.test_start.add_listener
def _on_test_start(environment, **_):
    state = state_of(environment)
    if state is None:
        gevent.spawn(_late_start, environment)
        return
    if state.session is not None:
        _apply_start_form(environment, state)
        state.dyno_rows = []
        try:
            run = state.session.start_run()
        except (UsageError, redis.RedisError, OSError) as e:  # e.g. the target refused the faults' admin connection
            why = str(e) if isinstance(e, UsageError) else describe_redis_error(e, state.session.config.redis_url)
            print(f"queuestorm: error: the test cannot start: {why}", file=sys.stderr, flush=True)
            state.session.failed_to_start()
            environment.process_exit_code = state.session.exit_code()
            gevent.spawn(environment.runner.quit)
            return
        if isinstance(environment.runner, MasterRunner):
            return
        state.runtime = ProducerRuntime(run.config, environment)
        state.rate_share = run.config.rate
    state.start_producing()


def _apply_start_form(environment, state: State) -> None:
    try:
        changed = apply_start_form(state.session.config, environment.parsed_options)
    except UsageError as e:
        log.error("start form: %s: this test keeps the previous values", e)
        return
    if changed:
        config = state.session.config
        log.info("start form: this test runs with %s", ", ".join(f"--{n.replace('_', '-')} {getattr(config, n)}"
                                                                for n in changed))


@events.test_stopping.add_listener
def _on_test_stopping(environment, **_):
    """Before Locust stops the users: no new dyno task may reach a worker being stopped (a task popped by a BRPOP
    whose greenlet is killed mid-reply is gone)."""
    state = state_of(environment)
    if state is not None and state.dyno is not None:
        state.dyno.stop_dispatch()


@events.test_stop.add_listener
def _on_test_stop(environment, **_):
    state = state_of(environment)
    if state is None:
        return
    run = state.session.current if state.session is not None else None
    if run is not None and run.phase == "load":
        run.stop_load()
    if state.dyno is not None:
        _stop_dyno(environment, state)
    if not isinstance(environment.runner, MasterRunner):
        state.stop_producing()
    if run is None or run.phase not in ("load",):
        return  # a runner stopped with no test of ours in progress (an idle web UI quitting)
    if isinstance(environment.runner, MasterRunner):
        # a headless master quits without stopping its workers first: their producers must close before the check
        environment.runner.send_message(STOP_MESSAGE)
    run.phase = "stopped"
    run.finish()
    environment.process_exit_code = state.session.exit_code()
    if not state.quitting and not state.session.defer_output:
        state.session.prepare_run(wait=False)  # a web UI: the next test's drains start consuming before it starts


@events.quitting.add_listener
def _on_quitting(environment, **_):
    """Ctrl-C, SIGTERM or the end of the run: a test still running ends in a true verdict before Locust exits; a
    second interrupt while it settles or checks skips the check (exit 2)."""
    state = state_of(environment)
    if state is None or state.session is None:
        return
    run = state.session.current
    again, state.quitting = state.quitting, True
    if run is None or run.phase == "done":
        return
    if again:
        run.cancel("interrupted again")
    else:
        try:
            if run.phase == "load":
                environment.runner.stop()  # fires test_stop, which settles, checks and reports
            run.finish()
        except KeyboardInterrupt:
            run.cancel("interrupted again")
    environment.process_exit_code = state.session.exit_code()


def _on_quit(environment) -> None:
    """After Locust printed its final tables: the charts, the verdict as the last lines, then the servers go. On
    SIGTERM Locust shuts down twice (its signal handler, then its main greenlet), printing its tables twice: each
    time the verdict follows them."""
    session = state_of(environment).session
    run_charts.write(environment)
    session.print_deferred()
    session.shutdown()
