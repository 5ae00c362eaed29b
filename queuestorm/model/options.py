"""Every option of a run, declared once. The table generates the Locust arguments (locust/options.py), the
`queuestorm` subcommands' flags (cli/flags.py), the run's configuration (RunConfig), the web UI start form's list of
per-test options and the numeric bounds (each option's type, one of option_types')."""

from dataclasses import asdict, dataclass, field, make_dataclass

from . import settings
from .option_types import as_text, bounded, ms_range, optional, ratio

DRAIN_MODES = ("inline", "external", "users", "off")
MAX_PAYLOAD_KB = 512 * 1024  # a Redis string's limit, 512 MB
MAX_BATCH = 10000
STATS_LINE_SETTLE_SECONDS = 5.0  # the stats line counts a job lost once saved this long ago and not completed

GROUPS = {  # Locust argument group -> its description; None: options added to the parser itself
    "queuestorm": "Redis job-queue load and loss checking",
    "queuestorm thresholds": "crossing one fails the run with exit code 1",
    "queuestorm capacity search": "--find-capacity: where the queue breaks",
    "queuestorm generator-consumer": "GeneratorUser and ConsumerUser (seed 002)",
}
THRESHOLDS = "queuestorm thresholds"
CAPACITY = "queuestorm capacity search"
GENERATOR = "queuestorm generator-consumer"
NO_GROUP = None


@dataclass(frozen=True)
class Option:
    name: str  # the attribute: --NAME-WITH-DASHES on the command line
    default: object
    help: str
    convert: object = None  # the value's type, carrying its bounds (option_types); None: text
    group: str | None = "queuestorm"
    env: str = ""  # the environment variable; default QS_NAME
    choices: tuple | None = None
    flag: bool = False  # on when given, no value
    per_test: bool = False  # the web UI's start form may change it for each test it starts
    secret: bool = False  # a URL that may carry a password: shown redacted
    in_config: bool = True  # a field of RunConfig; the others are read by whoever needs them from Locust's options
    kind: type | None = None  # RunConfig's field type when the default does not say it

    @property
    def env_var(self) -> str:
        return self.env or "QS_" + self.name.upper()

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    Option("redis_url", "", "Redis under test, redis:// or rediss:// (rediss://...?ssl_cert_reqs=none for a "
           "self-signed certificate). Empty: an embedded Redis is started", env="REDIS_URL", secret=True),
    Option("ledger_url", "", "Redis holding the ledger (default: the Redis under test)", secret=True),
    Option("protocol", settings.DEFAULT_PROTOCOL, "queue wire protocol (default: list)"),
    Option("queue", settings.DEFAULT_QUEUE, f"queue key (default: {settings.DEFAULT_QUEUE})"),
    Option("run_id", "", "run id naming the ledger (default: generated and printed)"),
    Option("rate", 0.0, "target enqueues per second over all users and processes; 0 = as fast as possible",
           bounded(), per_test=True),
    Option("batch", 1, "jobs each EnqueueUser task enqueues in one pipelined round trip, timed as one "
           "enqueue_batch request; --rate still counts jobs (default: 1)", bounded(int, low=1, high=MAX_BATCH),
           per_test=True),
    Option("payload_kb", 1.0, "payload size per job in KB (default: 1)", bounded(high=MAX_PAYLOAD_KB),
           per_test=True),
    Option("drain", "inline", "inline: start drain processes beside Locust; external: they run elsewhere; "
           "users: Locust users consume (dyno workers, consumers); off: enqueue only", choices=DRAIN_MODES),
    Option("drain_concurrency", 20, "greenlets per inline drain process (default: 20)",
           bounded(int, low=1, high=10000)),
    Option("drain_processes", 1, "inline drain processes (default: 1)", bounded(int, low=1, high=1000)),
    Option("visibility_timeout", settings.DEFAULT_VISIBILITY_TIMEOUT, "seconds a silent consumer keeps its jobs before they "
           "return to the queue (reliable, stream; default: 30)", bounded(low=0.1)),
    Option("work_ms", 0.0, "simulated work per job in the inline drain, ms (default: 0)", bounded()),
    Option("grace", 30.0, "seconds to wait after the load stops for the drain to finish (default: 30)", bounded(),
           per_test=True),
    Option("max_duplicated", 0, "duplicated jobs tolerated before the run fails (default: 0)", bounded(int),
           per_test=True),
    Option("report", "", "write the verdict as JSON to this file", per_test=True),
    Option("embedded", "auto", "embedded Redis when no --redis-url: a private redis-server if installed, else "
           "fakeredis; sentinel: a primary, a replica and three sentinels (for the failover fault)",
           choices=("auto", "redis-server", "fakeredis", "sentinel")),
    Option("aof", False, "run the embedded redis-server with appendonly yes (appendfsync always)", flag=True),
    Option("faults", "", "YAML file with a list of faults (or a scenario with a faults: list) to inject"),
    Option("wait_replicas", 0, "send WAIT after each enqueue (batch, generator push, dyno send): a job counts as "
           "enqueued only once this many replicas have it, else maybe-enqueued (default: 0, no WAIT)",
           bounded(int, high=100)),
    Option("wait_timeout_ms", 1000, "how long each WAIT waits for --wait-replicas, ms (default: 1000)",
           bounded(int, low=1, high=3600000)),
    Option("latency_ms", 0.0, "route load and drain through a proxy adding this delay each way (a distant Redis)",
           bounded(high=3600000)),
    Option("jitter_ms", 0.0, "random +/- jitter on --latency-ms", bounded(high=3600000)),
    Option("scenario", "", "scenario YAML: user classes, options, faults, thresholds (options given here win)"),
    Option("warmup", 0.0, "seconds after the load starts whose Locust statistics are discarded (default: 0)",
           bounded(), per_test=True),
    Option("max_lost", 0, "lost jobs tolerated (default: 0)", bounded(int), THRESHOLDS, per_test=True),
    Option("max_error_ratio", None, "failed / all Locust requests tolerated, e.g. 0.01 (default: no limit)",
           optional(bounded(high=1)), THRESHOLDS, per_test=True, kind=float | None),
    Option("min_rate", 0.0, "lowest achieved enqueue rate, jobs/s (default: no limit)", bounded(), THRESHOLDS,
           per_test=True),
    Option("latency_limit", "", "per event name, e.g. 'enqueue:p95=50,task:p99=200' (ms; p50 p90 p95 p99 p999 "
           "max)", group=THRESHOLDS, per_test=True),
    Option("connection_limit", 0, "the Redis plan's connection limit, reported beside the peak connections in use",
           bounded(int), per_test=True),
    Option("tasks_per_second", 0.0, "dyno workers: tasks/s each Locust process (each dyno) sends; 0 = its share of "
           "--rate", bounded()),
    Option("max_flats", 100, "dyno workers: items kept in each worker's list of flats (default: 100)",
           bounded(int, low=1)),
    Option("backlog_limit", 100, "dyno workers: jobs received and not completed at which a worker fails the run "
           "(default: 100)", bounded(int), THRESHOLDS),
    Option("find_capacity", False, "search the highest rate the queue sustains instead of a fixed load: steps from "
           "--rate (default 100/s) doubling until one fails, then bisection", group=CAPACITY, flag=True,
           per_test=True),
    Option("step_seconds", 10.0, "seconds each step of the capacity search holds its rate, its first 30 percent "
           "not measured (default: 10)", bounded(low=1, high=3600), CAPACITY, per_test=True),
    Option("capacity_precision", 0.05, "the search stops when the last good and first failing rates are this "
           "close (default: 0.05)", bounded(low=0.001, high=1), CAPACITY, per_test=True),
    Option("capacity_max_rate", 0.0, "the highest rate the search tries, jobs/s (default: no limit)", bounded(),
           CAPACITY, per_test=True),
    Option("capacity_latency_ms", 1000.0, "a step fails when its end-to-end p99 is over this (default: 1000); its "
           "enqueue p99 limit is --latency-limit's enqueue:p99, else 250, its error ratio --max-error-ratio, else "
           "0.01", bounded(low=0.1), CAPACITY, per_test=True),
    Option("generator_interval_ms", 500.0, "ms between two jobs pushed by the generator (default: 500)",
           bounded(low=0.1), GENERATOR, in_config=False),
    Option("generators", 1, "GeneratorUsers to spawn: one generates, the others wait as standby (default: 1)",
           bounded(int, high=10000), GENERATOR, in_config=False),
    Option("generator_check_seconds", 10.0, "seconds between consumers' checks that the generator lives; also the "
           "generator lock's expiry (default: 10)", bounded(low=0.1), GENERATOR, in_config=False),
    Option("generator_stop_after", 0.0, "a GeneratorUser stops this many seconds after it started generating, "
           "releasing nothing, as a crash would (0 = never)", bounded(), GENERATOR, in_config=False),
    Option("consumer_work_ms", "1-5", "ms a ConsumerUser spends on each job, drawn uniformly from MIN-MAX "
           "(default: 1-5)", as_text(ms_range), GENERATOR, in_config=False),
    Option("invalid_ratio", "0", "fraction of jobs the consumers judge invalid and push to the error queue, chosen "
           "by sequence number (default: 0)", as_text(ratio), GENERATOR, in_config=False),
    Option("error_queue", "", "list receiving invalid jobs (default: QUEUE:errors)", group=GENERATOR,
           in_config=False),
    Option("stats_line", 0.0, "print a JSON line of saved / completed / lost / throughput / loss_percent every "
           f"this many seconds (lost: saved more than {STATS_LINE_SETTLE_SECONDS:g}s earlier, not completed); "
           "0 = off", bounded(), NO_GROUP, in_config=False),
    Option("plot", "", "after the run, draw throughput, queue depth, e2e latency and faults over time to this PNG "
           "file (needs matplotlib: pip install 'queuestorm[plot]')", group=NO_GROUP, in_config=False),
)
BY_NAME = {option.name: option for option in OPTIONS}
PER_TEST = tuple(option.name for option in OPTIONS if option.per_test)
SECRET_OPTIONS = tuple(option.name for option in OPTIONS if option.secret)


def declared_types() -> dict:
    """Option name -> its type (None for text): the bounds of every numeric option."""
    return {option.name: option.convert for option in OPTIONS}


class _RunConfigMethods:
    @classmethod
    def from_options(cls, options):
        fields = cls.__dataclass_fields__
        values = {name: getattr(options, name) for name in fields if options is not None and hasattr(options, name)}
        return cls(**values)

    def to_message(self) -> dict:
        return asdict(self)

    @property
    def payload_bytes(self) -> int:
        return int(self.payload_kb * 1024)


RunConfig = make_dataclass(
    "RunConfig",
    [(o.name, o.kind or type(o.default), field(default=o.default)) for o in OPTIONS if o.in_config]
    # set by the run, not an option: the latency proxy's URL when there is one
    + [("load_url", str, field(default=""))],
    bases=(_RunConfigMethods,))
RunConfig.__module__ = __name__
RunConfig.__doc__ = "One run's configuration: a field per option of the table that the run itself reads."
