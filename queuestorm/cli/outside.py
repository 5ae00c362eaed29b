"""`queuestorm run open | producer | close`: a run's ledger for producers queuestorm does not run (a library's own client,
in any language), as docs/ledger.md specifies it. open writes the run's meta (protocol and queue, so `check` looks
the run's unfinished jobs up); producer registers one producer and prints its id; close marks producers closed."""

import sys

from . import flags
from ..model.errors import EXIT_PASS, UsageError
from ..model.keys import valid_run_id
from ..ledger.writer import Ledger
from ..protocols import protocol_class
from ..redis.connection import connect


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="open a run's ledger for an outside producer, register producers, close it",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", required=True)
    opened = actions.add_parser("open", help="create the run's meta (fails if the run exists)")
    flags.add(opened, "protocol", "the queue's wire protocol, for check's look-up of unfinished jobs", default=None)
    flags.add(opened, "queue", "the queue", default=None)
    actions.add_parser("producer", help="register a producer; prints its id")
    closed = actions.add_parser("close", help="mark producers closed: every open one, or --producer N")
    closed.add_argument("--producer", type=int, default=None, help="only this producer")
    closed.add_argument("--issued", type=int, default=None,
                        help="with --producer: sequence numbers it handed out (0..K-1), when it did not write them")
    for action in (opened, actions.choices["producer"], closed):
        flags.add(action, "run_id", "the run")
        flags.add(action, "ledger_url", "Redis holding the ledger", also_env="REDIS_URL")


def open_run(ledger: Ledger, protocol: str | None, queue: str | None) -> None:
    if ledger.exists():
        raise UsageError(f"run {ledger.run_id!r} exists already (queuestorm clean --run-id {ledger.run_id} first)")
    if bool(protocol) != bool(queue):
        raise UsageError("--protocol and --queue go together (both name where the run's jobs wait)")
    if protocol:

        protocol_class(protocol)
    meta = {"opened_by": "queuestorm run open"}
    if protocol:
        meta.update(protocol=protocol, queue=queue)
    ledger.create_run(meta)


def register_producer(ledger: Ledger) -> int:
    if not ledger.exists():
        raise UsageError(f"run {ledger.run_id!r} is not open (queuestorm run open --run-id {ledger.run_id})")
    return ledger.register_producer().producer_id


def close_producers(ledger: Ledger, producer: int | None, issued: int | None) -> list[int]:
    if producer is None:
        if issued is not None:
            raise UsageError("--issued needs --producer")
        targets = ledger.unclosed_producers()
    else:
        if not ledger.has_producer(producer):
            raise UsageError(f"run {ledger.run_id!r} has no producer {producer}")
        targets = [producer]
    ledger.close_producers(targets, issued=issued, close_run=producer is None)
    return targets


def cmd_run(a, out=None) -> int:
    out = out or sys.stdout
    if not a.run_id or not valid_run_id(a.run_id):
        raise UsageError("--run-id (or QS_RUN_ID) is required: letters, digits, '.', '_' and '-' (64 at most)")
    if not a.ledger_url:
        raise UsageError("--ledger-url (or QS_LEDGER_URL / REDIS_URL) is required")
    ledger = Ledger(connect(a.ledger_url, role="ledger Redis"), a.run_id)
    if a.action == "open":
        open_run(ledger, a.protocol, a.queue)
        print(f"run {a.run_id} open", file=out)
    elif a.action == "producer":
        print(register_producer(ledger), file=out)
    else:
        closed = close_producers(ledger, a.producer, a.issued)
        print(f"run {a.run_id}: {len(closed)} producer(s) closed", file=out)
    return EXIT_PASS
