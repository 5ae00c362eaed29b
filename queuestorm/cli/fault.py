"""`queuestorm fault KIND ...`: one fault by hand against a running system, undone when its duration ends or on
Ctrl-C / SIGTERM. The kinds that act on processes a Locust run owns (kill-drain, restart-redis) exist only inside
a run's `faults:` list."""

import re
import signal
import time

import gevent

from . import flags
from ..redis.connection import connect, redact, scrub
from ..model.errors import EXIT_PASS, UsageError
from ..model.keys import valid_run_id
from ..faults.kinds import FaultContext, FaultRunner, parse_faults
from ..faults.partitions import DIRECTIONS, PARTITION_KINDS
from ..model.option_types import bounded, port
from ..redis.proxy import ProxyProcess

MANUAL_KINDS = ("client-kill", "pause", "maxclients", "latency", "failover", *PARTITION_KINDS)
PROXY_KINDS = ("latency", *PARTITION_KINDS)
PARAMETERS = ("mode", "target", "maxclients", "delay_ms", "jitter_ms",  # the YAML fields that are options here
              "direction", "after_bytes", "after_ms", "rate_kb", "size")


def add_parser(sub) -> None:
    p = sub.add_parser("fault", help="inject one fault by hand (client-kill, pause, maxclients, latency, "
                                     "failover, blackhole, reset-peer, bandwidth, slicer)",
                       description=__doc__)
    p.add_argument("kind", choices=MANUAL_KINDS)
    flags.add(p, "redis_url", "the Redis to act on")
    p.add_argument("--duration", type=bounded(), default=0.0,
                   help="seconds the fault lasts before it is undone (pause, maxclients, latency)")
    p.add_argument("--mode", help="pause: write (default) or all; failover: sentinel (SENTINEL FAILOVER, the only "
                                  "one outside a run)")
    p.add_argument("--target", help="client-kill: load, drain or all (default) — by queuestorm's client names")
    flags.add(p, "run_id", "client-kill: the run whose connections are killed")
    p.add_argument("--all-runs", action="store_true",
                   help="client-kill: every run's connections (and those of drains started outside a run)")
    p.add_argument("--maxclients", type=bounded(int, low=1), help="maxclients: the lowered limit (default: 10)")
    p.add_argument("--delay-ms", type=bounded(high=3600000),
                   help="latency: delay each way, ms (default: 50); slicer: ms between pieces (default: 1)")
    p.add_argument("--jitter-ms", type=bounded(high=3600000), help="latency: +/- jitter each way, ms (default: 0)")
    p.add_argument("--direction", choices=DIRECTIONS,
                   help="blackhole, reset-peer, bandwidth, slicer: upstream (commands), downstream (replies) or both "
                        "(default: both; slicer: downstream)")
    p.add_argument("--after-bytes", type=bounded(int), help="reset-peer: RST once a connection carried this many bytes")
    p.add_argument("--after-ms", type=bounded(high=3600000), help="reset-peer: RST once a connection is this old, ms")
    p.add_argument("--rate-kb", type=bounded(low=0.001), help="bandwidth: KB/s per connection (default: 100)")
    p.add_argument("--size", type=bounded(int, low=1, high=65536), help="slicer: bytes per piece (default: 8)")
    p.add_argument("--listen-port", type=port, default=0,
                   help="latency and the partition kinds: the proxy's port on 127.0.0.1 (default: any free one, "
                        "printed)")


def cmd_fault(a) -> int:
    if not a.redis_url:
        raise UsageError("--redis-url (or REDIS_URL) is required")
    item = {"kind": a.kind, "duration": a.duration}
    item.update({name: getattr(a, name) for name in PARAMETERS if getattr(a, name) is not None})
    try:
        spec, = parse_faults([item], "cli")
    except UsageError as e:  # name the option, not the YAML field
        raise UsageError(re.sub(r"^cli: faults\[0\]\.(\w+)", lambda m: "--" + m[1].replace("_", "-"), str(e))) from None
    if a.run_id and not valid_run_id(a.run_id):
        raise UsageError(f"--run-id {a.run_id!r} may hold only letters, digits, '.', '_' and '-' (64 at most)")
    if a.kind == "client-kill" and not (a.run_id or a.all_runs):
        raise UsageError("client-kill needs --run-id (or QS_RUN_ID) to kill one run's connections, or --all-runs")
    context = FaultContext(admin=connect(a.redis_url, role="target Redis"), run_id=a.run_id or "",
                           all_runs=a.all_runs)
    if a.kind in PROXY_KINDS:
        context.proxy = ProxyProcess(a.redis_url, listen_port=a.listen_port)
        print(f"{a.kind} proxy: point clients at {redact(context.proxy.url)}", flush=True)
    runner = FaultRunner([spec], context, log_failures=False)
    gevent.signal_handler(signal.SIGTERM, gevent.kill, gevent.getcurrent(), KeyboardInterrupt)
    try:
        runner.start()
        _wait_until_undone(runner, spec.duration)
    except KeyboardInterrupt:
        print("interrupted: undoing the fault", flush=True)
    finally:
        runner.stop()
        if context.proxy is not None:
            context.proxy.stop()
    record = runner.records[0] if runner.records else {}
    if "error" in record:
        raise UsageError(f"{a.kind} on {redact(a.redis_url)} failed: {scrub(record['error'], a.redis_url)}")
    return EXIT_PASS


def _wait_until_undone(runner: FaultRunner, duration: float) -> None:
    started = time.monotonic()
    while not (runner.records and {"detail", "error"} & runner.records[0].keys()):  # a failover takes seconds
        gevent.sleep(0.01)
    if "error" not in runner.records[0]:
        gevent.sleep(max(0.0, started + duration - time.monotonic()))

