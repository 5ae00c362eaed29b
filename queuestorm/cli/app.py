"""`queuestorm drain | check | clean | fault | errors | foreign`: the processes that run beside Locust."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import redis  # noqa: E402

from . import error_queue, fault as fault_cli, flags, foreign, outside  # noqa: E402
from ..model import settings  # noqa: E402
from ..redis.connection import describe_redis_error  # noqa: E402
from ..model.errors import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_PASS, UsageError  # noqa: E402
from ..model.keys import valid_run_id  # noqa: E402
from ..model.option_types import ArgumentParser, bounded  # noqa: E402
from ..drain.worker import DrainWorker, run_processes
from ..ledger import drain_reports
from ..ledger.check import check_run
from ..redis.connection import connect
from ..run.output_paths import check_path
from ..report.console import render, write_json
from ..ledger.writer import Ledger
from ..protocols import make_protocol
from ..ledger.cleanup import delete_run


def _add_drain(sub) -> None:
    p = sub.add_parser("drain", help="consume jobs, record completions in the ledger, acknowledge")
    flags.add(p, "redis_url", "Redis under test")
    flags.add(p, "ledger_url", "Redis holding the ledger", shown="--redis-url")
    flags.add(p, "protocol", "wire protocol")
    flags.add(p, "queue", "queue key")
    flags.add(p, "drain_concurrency", "greenlets per process", flag="--concurrency", dest="concurrency")
    p.add_argument("--processes", type=bounded(int, low=1, high=1000), default=1,
                   help="drain processes to run side by side (default: 1)")
    p.add_argument("--batch", type=bounded(int, low=1, high=100000), default=settings.env("QS_DRAIN_BATCH", "50"),
                   help="jobs taken per fetch when there is no --work-ms [QS_DRAIN_BATCH; default: 50]")
    flags.add(p, "visibility_timeout", "seconds a silent consumer keeps its jobs before the reaper returns them to "
              "the queue (reliable, stream)")
    p.add_argument("--block", type=bounded(above=0, high=3600), default=settings.DEFAULT_BLOCK_SECONDS,
                   help="seconds a fetch blocks waiting for a job (default: 1)")
    flags.add(p, "work_ms", "simulated work per job, in ms")
    p.add_argument("--until-empty", action="store_true", help="exit once the queue is empty and nothing moves")
    p.add_argument("--stats-interval", type=bounded(above=0), default=3.0,
                   help="seconds between stats lines (default: 3)")
    p.add_argument("--consumer-id", default=None,
                   help="stable consumer identity, kept across restarts (default: host-pid)")


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="classify every job of a run: lost, duplicated, unexpected, recovered")
    flags.add(p, "run_id", "run to check")
    flags.add(p, "ledger_url", "Redis holding the ledger", also_env="REDIS_URL")
    flags.add(p, "report", "also write the verdict as JSON here", flag="--json", dest="json_path")
    flags.add(p, "max_duplicated", "duplicates tolerated before the run fails")
    flags.add(p, "max_lost", "lost jobs tolerated before the run fails")
    flags.add(p, "redis_url", "Redis under test, searched for the run's jobs still queued or held, which are "
              "unfinished, not lost", shown="--ledger-url")


def _add_clean(sub) -> None:
    p = sub.add_parser("clean", help="delete one run's ledger keys (by prefix; nothing else)")
    flags.add(p, "run_id", "run to delete")
    flags.add(p, "ledger_url", "Redis holding the ledger", also_env="REDIS_URL")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="queuestorm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    _add_drain(sub)
    _add_check(sub)
    _add_clean(sub)
    fault_cli.add_parser(sub)
    error_queue.add_parser(sub)
    foreign.add_parser(sub)
    outside.add_parser(sub)
    return p


def _need(value, what: str) -> str:
    if not value:
        raise UsageError(f"{what} is required")
    return value


def _run_id(value) -> str:
    run_id = _need(value, "--run-id (or QS_RUN_ID)")
    if not valid_run_id(run_id):
        raise UsageError(f"--run-id {run_id!r} may hold only letters, digits, '.', '_' and '-' (64 at most)")
    return run_id


def cmd_drain(a) -> int:
    redis_url = _need(a.redis_url, "--redis-url (or REDIS_URL)")
    if settings.env("QS_RUN_ID"):
        _run_id(settings.env("QS_RUN_ID"))  # names this drain's connections: the run's faults pick them by it
    if a.processes > 1:
        hand_urls_to_children(redis_url, a.ledger_url)
        return run_processes([drain_command_for(a.raw_args[1:]) for _ in range(a.processes)])
    worker = DrainWorker(
        redis_url, a.protocol, a.queue, ledger_url=a.ledger_url, concurrency=a.concurrency, batch=a.batch,
        visibility_timeout=a.visibility_timeout, block_seconds=a.block, work_ms=a.work_ms, until_empty=a.until_empty,
        stats_interval=a.stats_interval, consumer_id=a.consumer_id,
    )
    return worker.run()


URL_OPTIONS = ("--redis-url", "--ledger-url")


def hand_urls_to_children(redis_url: str, ledger_url: str | None) -> None:
    """Child drains read their URLs from the environment they inherit: argv is visible to every user in `ps`."""
    os.environ["REDIS_URL"] = redis_url
    if ledger_url:
        os.environ["QS_LEDGER_URL"] = ledger_url


def drain_command_for(args: list[str]) -> list[str]:
    """This process's own drain arguments, as one single-process child, without the URLs (see
    hand_urls_to_children)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--processes", *URL_OPTIONS):
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in ("--processes", *URL_OPTIONS))):
            continue
        out.append(arg)
    return [sys.executable, "-m", "queuestorm", "drain", *out, "--processes", "1"]


def cmd_check(a) -> int:
    run_id = _run_id(a.run_id)
    url = _need(a.ledger_url, "--ledger-url (or QS_LEDGER_URL / REDIS_URL)")
    check_path("--json", a.json_path)
    client = connect(url, role="ledger Redis")
    target_url = a.redis_url or url
    target = client if target_url == url else connect(target_url, role="Redis under test")
    protocol = _protocol_of_run(client, run_id)
    try:
        verdict = check_run(client, run_id, max_duplicated=a.max_duplicated, max_lost=a.max_lost,
                            target=target if protocol is not None else None, protocol=protocol)
    except redis.RedisError as e:
        raise UsageError(f"looking for the run's unfinished jobs failed: {type(e).__name__}: {e}") from None
    drains = drain_reports.read(client, run_id)
    if drains:
        verdict.extra["vitals"] = drains
    print(render(verdict))
    if a.json_path:
        write_json(verdict, a.json_path)
    return EXIT_PASS if verdict.passed else EXIT_FAILED


def _protocol_of_run(client, run_id: str):
    """The run's protocol on its queue, as its meta names them; None for a ledger that does not say (then jobs not
    completed are not looked up, and all count as lost)."""
    meta = Ledger(client, run_id).meta()
    if not meta.get("protocol") or not meta.get("queue"):
        return None
    return make_protocol(meta["protocol"], meta["queue"])


def cmd_clean(a) -> int:
    run_id = _run_id(a.run_id)
    url = _need(a.ledger_url, "--ledger-url (or QS_LEDGER_URL / REDIS_URL)")
    deleted = delete_run(connect(url, role="ledger Redis"), run_id)
    print(f"deleted {deleted} key(s) of run {run_id}")
    return EXIT_PASS


COMMANDS = {"drain": cmd_drain, "check": cmd_check, "clean": cmd_clean, "fault": fault_cli.cmd_fault,
            "errors": error_queue.cmd_errors, "foreign": foreign.cmd_foreign,
            "run": outside.cmd_run}


# The URL each command talks to, named in the one line a Redis or network error becomes.
MAIN_URL = {"drain": ("redis_url", "target Redis"), "check": ("ledger_url", "ledger Redis"),
            "clean": ("ledger_url", "ledger Redis"), "fault": ("redis_url", "target Redis"),
            "errors": ("redis_url", "Redis"), "run": ("ledger_url", "ledger Redis")}


def one_line_error(e: BaseException, args) -> str:
    """A UsageError as it is; a Redis, network or file error as one line naming the URL (redacted) or the file."""
    if isinstance(e, UsageError):
        return str(e)
    if isinstance(e, redis.RedisError) or (isinstance(e, OSError) and e.filename is None):
        attribute, role = MAIN_URL[args.command]
        return describe_redis_error(e, getattr(args, attribute, "") or "", role)
    return f"{e.filename}: {e.strerror}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.raw_args = argv
    try:
        return COMMANDS[args.command](args)
    except (UsageError, redis.RedisError, OSError) as e:
        print(f"queuestorm {args.command}: error: {one_line_error(e, args)}", file=sys.stderr, flush=True)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
