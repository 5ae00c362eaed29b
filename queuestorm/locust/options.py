"""queuestorm's Locust options: each also an environment variable, and shown in the web UI's start form."""

import argparse
from dataclasses import asdict, dataclass

from ..produce import generator_options
from ..report import plot
from ..model import settings
from ..observe import stats_line
from ..model.errors import UsageError
from ..model.option_types import bounded, one_line_errors
from ..model.keys import valid_run_id
from ..protocols import protocol_class
from ..run.thresholds import parse_latency_limits
from ..redis.topology import refuse_cluster_runs

DRAIN_MODES = ("inline", "external", "users", "off")


MAX_PAYLOAD_KB = 512 * 1024  # a Redis string's limit, 512 MB


def _optional(convert):
    def optional(text):
        return None if text in (None, "", "None") else convert(text)
    optional.__name__ = convert.__name__
    optional.bounds = convert.bounds
    return optional


# What the web UI's start form may change for each test it starts; the other options set up the run's servers and
# processes once, when Locust starts. Each is converted and bounded by its declaration's type.
PER_TEST = ("rate", "payload_kb", "grace", "max_duplicated", "max_lost", "max_error_ratio", "min_rate",
            "latency_limit", "warmup", "report", "connection_limit", "find_capacity", "step_seconds",
            "capacity_precision", "capacity_max_rate", "capacity_latency_ms")
FIXED_NOTE = " [fixed at startup]"
SECRET_OPTIONS = ("redis_url", "ledger_url")  # URLs that may carry a password: the web UI shows them redacted


def _show_in_web_ui(actions) -> None:
    """Arguments added to a group bypass Locust's add_argument, which marks what its start form shows."""
    for action in actions:
        if action.dest == "help" or hasattr(action, "include_in_web_ui"):
            continue
        action.include_in_web_ui = True
        action.is_secret = action.dest in SECRET_OPTIONS
        action.is_required = action.is_multiple = False
        if action.dest not in PER_TEST and action.dest in RunConfig.__dataclass_fields__ and action.help:
            action.help += FIXED_NOTE


def apply_start_form(config: "RunConfig", options) -> list[str]:
    """Copy into `config` the per-test options as the start form left them; the names that changed."""
    changed = {}
    types = declared_types()
    for name in PER_TEST:
        value = getattr(options, name, getattr(config, name))
        convert = types.get(name) or (_flag if isinstance(getattr(config, name), bool) else str)
        try:
            value = convert(value) if value is not None else None
        except (ValueError, argparse.ArgumentTypeError) as e:
            detail = f"{e}" if isinstance(e, argparse.ArgumentTypeError) else f"not a valid value: {value!r}"
            raise UsageError(f"--{name.replace('_', '-')}: {detail}") from None
        if value != getattr(config, name):
            changed[name] = value
    old = {name: getattr(config, name) for name in changed}
    for name, value in changed.items():
        setattr(config, name, value)
    try:
        config.validate()
    except UsageError:
        for name, value in old.items():
            setattr(config, name, value)
        raise
    return sorted(changed)


def _flag(value) -> bool:
    return value is True or str(value).lower() in ("true", "on", "1", "yes")


class _TypeRecorder:
    """Stands in for a parser to read the declared type of every option."""

    def __init__(self):
        self.types = {}

    def add_argument_group(self, *_args, **_kwargs):
        return self

    def add_argument(self, *flags, type=None, dest=None, **_kwargs):
        self.types[dest or flags[0].lstrip("-").replace("-", "_")] = type


def declared_types() -> dict:
    """Option name -> its declared type (None for text), as add_arguments declares them."""
    recorder = _TypeRecorder()
    _declare(recorder)
    return recorder.types


def add_arguments(parser) -> None:
    first = len(parser._actions)
    _declare(parser)
    _show_in_web_ui(parser._actions[first:])
    one_line_errors(parser)


def _declare(parser) -> None:
    group = parser.add_argument_group("queuestorm", "Redis job-queue load and loss checking")
    group.add_argument("--redis-url", env_var="REDIS_URL", default="",
                       help="Redis under test, redis:// or rediss:// (rediss://...?ssl_cert_reqs=none for a "
                            "self-signed certificate). Empty: an embedded Redis is started")
    group.add_argument("--ledger-url", env_var="QS_LEDGER_URL", default="",
                       help="Redis holding the ledger (default: the Redis under test)")
    group.add_argument("--protocol", env_var="QS_PROTOCOL", default=settings.DEFAULT_PROTOCOL,
                       help="queue wire protocol (default: list)")
    group.add_argument("--queue", env_var="QS_QUEUE", default=settings.DEFAULT_QUEUE,
                       help=f"queue key (default: {settings.DEFAULT_QUEUE})")
    group.add_argument("--run-id", env_var="QS_RUN_ID", default="",
                       help="run id naming the ledger (default: generated and printed)")
    group.add_argument("--rate", env_var="QS_RATE", type=bounded(), default=0.0,
                       help="target enqueues per second over all users and processes; 0 = as fast as possible")
    group.add_argument("--payload-kb", env_var="QS_PAYLOAD_KB", type=bounded(high=MAX_PAYLOAD_KB), default=1.0,
                       help="payload size per job in KB (default: 1)")
    group.add_argument("--drain", env_var="QS_DRAIN", default="inline", choices=DRAIN_MODES,
                       help="inline: start drain processes beside Locust; external: they run elsewhere; "
                            "users: Locust users consume (dyno workers, consumers); off: enqueue only")
    group.add_argument("--drain-concurrency", env_var="QS_DRAIN_CONCURRENCY",
                       type=bounded(int, low=1, high=10000), default=20,
                       help="greenlets per inline drain process (default: 20)")
    group.add_argument("--drain-processes", env_var="QS_DRAIN_PROCESSES", type=bounded(int, low=1, high=1000),
                       default=1,
                       help="inline drain processes (default: 1)")
    group.add_argument("--visibility-timeout", env_var="QS_VISIBILITY_TIMEOUT", type=bounded(low=0.1), default=30.0,
                       help="seconds a silent consumer keeps its jobs before they return to the queue "
                            "(reliable, stream; default: 30)")
    group.add_argument("--work-ms", env_var="QS_WORK_MS", type=bounded(), default=0.0,
                       help="simulated work per job in the inline drain, ms (default: 0)")
    group.add_argument("--grace", env_var="QS_GRACE", type=bounded(), default=30.0,
                       help="seconds to wait after the load stops for the drain to finish (default: 30)")
    group.add_argument("--max-duplicated", env_var="QS_MAX_DUPLICATED", type=bounded(int), default=0,
                       help="duplicated jobs tolerated before the run fails (default: 0)")
    group.add_argument("--report", env_var="QS_REPORT", default="",
                       help="write the verdict as JSON to this file")
    group.add_argument("--embedded", env_var="QS_EMBEDDED", default="auto",
                       choices=("auto", "redis-server", "fakeredis", "sentinel"),
                       help="embedded Redis when no --redis-url: a private redis-server if installed, else fakeredis; "
                            "sentinel: a primary, a replica and three sentinels (for the failover fault)")
    group.add_argument("--aof", env_var="QS_AOF", action="store_true", default=False,
                       help="run the embedded redis-server with appendonly yes (appendfsync always)")
    group.add_argument("--faults", env_var="QS_FAULTS", default="",
                       help="YAML file with a list of faults (or a scenario with a faults: list) to inject")
    group.add_argument("--wait-replicas", env_var="QS_WAIT_REPLICAS", type=bounded(int, high=100), default=0,
                       help="send WAIT after each enqueue: a job counts as enqueued only once this many replicas "
                            "have it, else maybe-enqueued (default: 0, no WAIT)")
    group.add_argument("--wait-timeout-ms", env_var="QS_WAIT_TIMEOUT_MS", type=bounded(int, low=1, high=3600000),
                       default=1000, help="how long each WAIT waits for --wait-replicas, ms (default: 1000)")
    group.add_argument("--latency-ms", env_var="QS_LATENCY_MS", type=bounded(high=3600000), default=0.0,
                       help="route load and drain through a proxy adding this delay each way (a distant Redis)")
    group.add_argument("--jitter-ms", env_var="QS_JITTER_MS", type=bounded(high=3600000), default=0.0,
                       help="random +/- jitter on --latency-ms")
    group.add_argument("--scenario", env_var="QS_SCENARIO", default="",
                       help="scenario YAML: user classes, options, faults, thresholds (options given here win)")
    group.add_argument("--warmup", env_var="QS_WARMUP", type=bounded(), default=0.0,
                       help="seconds after the load starts whose Locust statistics are discarded (default: 0)")
    limits = parser.add_argument_group("queuestorm thresholds", "crossing one fails the run with exit code 1")
    limits.add_argument("--max-lost", env_var="QS_MAX_LOST", type=bounded(int), default=0,
                        help="lost jobs tolerated (default: 0)")
    limits.add_argument("--max-error-ratio", env_var="QS_MAX_ERROR_RATIO", type=_optional(bounded(high=1)),
                        default=None,
                        help="failed / all Locust requests tolerated, e.g. 0.01 (default: no limit)")
    limits.add_argument("--min-rate", env_var="QS_MIN_RATE", type=bounded(), default=0.0,
                        help="lowest achieved enqueue rate, jobs/s (default: no limit)")
    limits.add_argument("--latency-limit", env_var="QS_LATENCY_LIMIT", default="",
                        help="per event name, e.g. 'enqueue:p95=50,task:p99=200' (ms; p50 p90 p95 p99 p999 max)")
    group.add_argument("--connection-limit", env_var="QS_CONNECTION_LIMIT", type=bounded(int), default=0,
                       help="the Redis plan's connection limit, reported beside the peak connections in use")
    group.add_argument("--tasks-per-second", env_var="QS_TASKS_PER_SECOND", type=bounded(), default=0.0,
                       help="dyno workers: tasks/s each Locust process (each dyno) sends; 0 = its share of --rate")
    group.add_argument("--max-flats", env_var="QS_MAX_FLATS", type=bounded(int, low=1), default=100,
                       help="dyno workers: items kept in each worker's list of flats (default: 100)")
    limits.add_argument("--backlog-limit", env_var="QS_BACKLOG_LIMIT", type=bounded(int), default=100,
                        help="dyno workers: jobs received and not completed at which a worker fails the run "
                             "(default: 100)")
    capacity = parser.add_argument_group("queuestorm capacity search", "--find-capacity: where the queue breaks")
    capacity.add_argument("--find-capacity", env_var="QS_FIND_CAPACITY", action="store_true", default=False,
                          help="search the highest rate the queue sustains instead of a fixed load: steps from "
                               "--rate (default 100/s) doubling until one fails, then bisection")
    capacity.add_argument("--step-seconds", env_var="QS_STEP_SECONDS", type=bounded(low=1, high=3600), default=10.0,
                          help="seconds each step of the capacity search holds its rate, its first 30 percent "
                               "not measured (default: 10)")
    capacity.add_argument("--capacity-precision", env_var="QS_CAPACITY_PRECISION", type=bounded(low=0.001, high=1),
                          default=0.05,
                          help="the search stops when the last good and first failing rates are this close "
                               "(default: 0.05)")
    capacity.add_argument("--capacity-max-rate", env_var="QS_CAPACITY_MAX_RATE", type=bounded(), default=0.0,
                          help="the highest rate the search tries, jobs/s (default: no limit)")
    capacity.add_argument("--capacity-latency-ms", env_var="QS_CAPACITY_LATENCY_MS", type=bounded(low=0.1),
                          default=1000.0,
                          help="a step fails when its end-to-end p99 is over this (default: 1000); its enqueue "
                               "p99 limit is --latency-limit's enqueue:p99, else 250, its error ratio "
                               "--max-error-ratio, else 0.01")
    generator_options.add_arguments(parser)
    stats_line.add_arguments(parser)
    plot.add_arguments(parser)


@dataclass
class RunConfig:
    redis_url: str = ""
    ledger_url: str = ""
    protocol: str = settings.DEFAULT_PROTOCOL
    queue: str = settings.DEFAULT_QUEUE
    run_id: str = ""
    rate: float = 0.0
    payload_kb: float = 1.0
    drain: str = "inline"
    drain_concurrency: int = 20
    drain_processes: int = 1
    visibility_timeout: float = 30.0
    work_ms: float = 0.0
    grace: float = 30.0
    max_duplicated: int = 0
    report: str = ""
    embedded: str = "auto"
    faults: str = ""
    aof: bool = False
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    scenario: str = ""
    warmup: float = 0.0
    max_lost: int = 0
    max_error_ratio: float | None = None
    min_rate: float = 0.0
    latency_limit: str = ""
    backlog_limit: int = 100
    max_flats: int = 100
    tasks_per_second: float = 0.0
    connection_limit: int = 0
    find_capacity: bool = False
    step_seconds: float = 10.0
    capacity_precision: float = 0.05
    capacity_max_rate: float = 0.0
    capacity_latency_ms: float = 1000.0
    load_url: str = ""  # set by the run, not an option: the latency proxy's URL when there is one

    @classmethod
    def from_options(cls, options) -> "RunConfig":
        fields = cls.__dataclass_fields__
        values = {name: getattr(options, name) for name in fields if options is not None and hasattr(options, name)}
        return cls(**values)

    def to_message(self) -> dict:
        return asdict(self)

    @property
    def payload_bytes(self) -> int:
        return int(self.payload_kb * 1024)

    def validate(self) -> None:
        protocol_class(self.protocol)
        for option, url in (("--redis-url", self.redis_url), ("--ledger-url", self.ledger_url)):
            refuse_cluster_runs(url, option)
        if self.run_id and not valid_run_id(self.run_id):
            raise UsageError(f"--run-id {self.run_id!r} may hold only letters, digits, '.', '_' and '-' (64 at most)")
        if self.drain not in DRAIN_MODES:
            raise UsageError(f"--drain {self.drain!r} is not one of {', '.join(DRAIN_MODES)}")
        types = declared_types()  # the bounds, for a configuration that did not come through a parser
        for name in self.__dataclass_fields__:
            convert, value = types.get(name), getattr(self, name)
            if convert is not None and value is not None and not isinstance(value, bool):
                try:
                    convert(value)
                except argparse.ArgumentTypeError as e:
                    raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
        try:
            parse_latency_limits(self.latency_limit)
        except ValueError as e:
            raise UsageError(f"--latency-limit: {e}") from None
        if not self.queue:
            raise UsageError("--queue must not be empty")
