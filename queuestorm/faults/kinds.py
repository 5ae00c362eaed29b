"""Faults injected into a run at time offsets, each undone at the end even when the run is interrupted.

    kill-drain     SIGKILL `count` inline drain processes, restart them (same consumer id) after `restart_after` s
    client-kill    CLIENT KILL the connections of the `target`: load, drain or all (seed 000's EOF / reset)
    pause          CLIENT PAUSE for `duration` s, `mode` write (every queue command) or all (PING too; Redis
                   refuses to lift an ALL pause early, so a run stopping during one waits it out)
    maxclients     CONFIG SET maxclients `maxclients` for `duration` s, then restore (a hosted plan's limit)
    latency        `delay_ms` +/- `jitter_ms` each way through queuestorm's proxy for `duration` s
    restart-redis  SHUTDOWN the redis-server queuestorm started, start it again after `down_for` s
"""

import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar

import argparse

import gevent
import redis

from ..redis.connection import DRAIN_CLIENT, LOAD_CLIENT, client_name
from ..model.errors import UsageError
from ..model.option_types import bounded

log = logging.getLogger("queuestorm")


@dataclass
class FaultContext:
    admin: redis.Redis  # direct to the target, never through the proxy
    drain: object = None  # DrainFleet
    proxy: object = None  # ProxyProcess
    server: object = None  # EmbeddedRedis that queuestorm manages
    run_id: str = ""  # faults that pick clients pick this run's (see connection.client_name)...
    all_runs: bool = False  # ...unless asked for every run's


class Fault:
    kind: ClassVar[str]
    params: ClassVar[dict[str, object]] = {}  # name -> default
    bounds: ClassVar[dict[str, object]] = {}  # name -> option_types.bounded, for the numeric params
    needs: ClassVar[str] = ""  # what the run must have: "drain", "proxy", "server"
    real_redis: ClassVar[bool] = False  # needs a real redis-server: fakeredis has no CLIENT KILL / PAUSE / CONFIG

    def __init__(self, at: float, duration: float, context: FaultContext, **params):
        self.at = at
        self.duration = duration
        self.context = context
        for name, default in self.params.items():
            setattr(self, name, params.get(name, default))

    def inject(self) -> str:
        """Start the fault; returns what was done, for the log and the verdict."""
        raise NotImplementedError

    def undo(self) -> None:
        pass

    @property
    def lasts(self) -> float:
        return self.duration


class KillDrain(Fault):
    kind = "kill-drain"
    params = {"count": 1, "restart_after": 1.0}
    bounds = {"count": bounded(int, low=1, high=1000), "restart_after": bounded()}
    needs = "drain"

    def inject(self) -> str:
        self._killed = self.context.drain.kill(int(self.count))
        return f"SIGKILL drain process(es) {self._killed}"

    @property
    def lasts(self) -> float:
        return self.restart_after

    def undo(self) -> None:
        self.context.drain.restart(self._killed)


class ClientKill(Fault):
    kind = "client-kill"
    real_redis = True
    params = {"target": "all", "all_runs": False}
    NAMES = {"load": (LOAD_CLIENT,), "drain": (DRAIN_CLIENT,), "all": (LOAD_CLIENT, DRAIN_CLIENT)}

    def picks(self, name: str) -> bool:
        """This run's load or drain connections; with all_runs, every run's and those named without a run."""
        for base in self.NAMES[self.target]:
            if self.all_runs or self.context.all_runs:
                if name == base or name.startswith(base + ":"):
                    return True
            elif name == client_name(base, self.context.run_id):
                return True
        return False

    def inject(self) -> str:
        if not (self.context.run_id or self.all_runs or self.context.all_runs):
            raise UsageError("client-kill: no run id to pick this run's connections by (FaultContext.run_id)")
        ids = [c["id"] for c in self.context.admin.client_list() if self.picks(c.get("name", ""))]
        killed = 0
        for client_id in ids:
            try:
                killed += self.context.admin.execute_command("CLIENT", "KILL", "ID", client_id)
            except redis.ResponseError:
                pass  # gone already
        return f"killed {killed} {self.target} connection(s)"


class Pause(Fault):
    kind = "pause"
    real_redis = True
    params = {"mode": "write"}

    def inject(self) -> str:
        self.context.admin.execute_command("CLIENT", "PAUSE", int(self.duration * 1000), self.mode.upper())
        self._ends = time.monotonic() + self.duration
        return f"CLIENT PAUSE {self.duration:g}s {self.mode}"

    def undo(self) -> None:
        if self.mode == "all":  # CLIENT UNPAUSE is itself paused until the pause ends
            remaining = self._ends - time.monotonic()
            if remaining > 0:
                log.warning("waiting %.1fs for CLIENT PAUSE ALL to end", remaining)
                gevent.sleep(remaining)
            return
        self.context.admin.execute_command("CLIENT", "UNPAUSE")


class MaxClients(Fault):
    kind = "maxclients"
    real_redis = True
    params = {"maxclients": 10}
    bounds = {"maxclients": bounded(int, low=1)}

    def inject(self) -> str:
        self._saved = self.context.admin.config_get("maxclients")["maxclients"]
        self.context.admin.config_set("maxclients", int(self.maxclients))
        return f"maxclients {self._saved} -> {self.maxclients} for {self.duration:g}s"

    def undo(self) -> None:
        self.context.admin.config_set("maxclients", self._saved)


class Latency(Fault):
    kind = "latency"
    params = {"delay_ms": 50.0, "jitter_ms": 0.0}
    bounds = {"delay_ms": bounded(high=3600000), "jitter_ms": bounded(high=3600000)}
    needs = "proxy"

    def inject(self) -> str:
        self.context.proxy.set_latency(float(self.delay_ms), float(self.jitter_ms))
        return f"latency {self.delay_ms:g} +/- {self.jitter_ms:g} ms each way for {self.duration:g}s"

    def undo(self) -> None:
        self.context.proxy.reset()


class RestartRedis(Fault):
    kind = "restart-redis"
    real_redis = True
    params = {"down_for": 1.0}
    bounds = {"down_for": bounded()}
    needs = "server"

    def inject(self) -> str:
        self.context.server.shutdown()
        return f"redis-server shut down ({'AOF kept' if self.context.server.aof else 'no persistence'})"

    @property
    def lasts(self) -> float:
        return self.down_for

    def undo(self) -> None:
        self.context.server.start_again()


FAULTS: dict[str, type[Fault]] = {cls.kind: cls for cls in (KillDrain, ClientKill, Pause, MaxClients, Latency,
                                                            RestartRedis)}
CHOICES = {("client-kill", "target"): tuple(ClientKill.NAMES), ("client-kill", "all_runs"): (True, False),
           ("pause", "mode"): ("all", "write")}
SECONDS = bounded()


@dataclass
class FaultSpec:
    kind: str
    at: float
    duration: float = 0.0
    params: dict = field(default_factory=dict)


def parse_faults(items, source: str) -> list[FaultSpec]:
    """Validate a `faults:` list; errors name the file and the field."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise UsageError(f"{source}: faults: must be a list")
    specs = []
    for i, item in enumerate(items):
        where = f"{source}: faults[{i}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: must be a mapping with a kind")
        item = dict(item)
        kind = item.pop("kind", None)
        if kind not in FAULTS:
            raise UsageError(f"{where}.kind: unknown fault {kind!r} (known: {', '.join(FAULTS)})")
        cls = FAULTS[kind]
        at = _number(item.pop("at", 0), f"{where}.at")
        duration = _number(item.pop("duration", 0), f"{where}.duration")
        for name, value in item.items():
            if name not in cls.params:
                allowed = ", ".join(["kind", "at", "duration", *cls.params])
                raise UsageError(f"{where}.{name}: unknown field for {kind} (allowed: {allowed})")
            choices = CHOICES.get((kind, name))
            if choices:
                if value not in choices:
                    raise UsageError(f"{where}.{name}: {value!r} is not one of {', '.join(choices)}")
            else:
                item[name] = _number(value, f"{where}.{name}", cls.bounds[name])
        if (kind in ("pause", "maxclients", "latency") or getattr(cls, "needs_duration", False)) and duration <= 0:
            raise UsageError(f"{where}.duration: {kind} needs a duration above 0")
        specs.append(FaultSpec(kind, at, duration, item))
    return specs


def _number(value, where: str, convert=SECONDS):
    if isinstance(value, str) and value.endswith("s"):
        value = value[:-1]
    try:
        return convert(value)
    except argparse.ArgumentTypeError as e:
        if str(e).startswith("expected a number"):
            raise UsageError(f"{where}: {value!r} is not a number{' of seconds' if convert is SECONDS else ''}") \
                from None
        raise UsageError(f"{where}: {e}") from None


class FaultRunner:
    """Runs the schedule from the moment the load starts; logs, records and times every fault as a Locust event."""

    def __init__(self, specs: list[FaultSpec], context: FaultContext, environment=None, log_failures: bool = True):
        self.specs = sorted(specs, key=lambda s: s.at)
        self.log_failures = log_failures  # False where the caller reports a failure itself (the fault CLI)
        self.context = context
        self.environment = environment
        self.records: list[dict] = []
        self._active: list[Fault] = []
        self._greenlets: list[gevent.Greenlet] = []
        self._started = 0.0

    def start(self) -> None:
        """Faults at 0 are in force when this returns, before the first user starts (test_start fires first)."""
        self._started = time.monotonic()
        now = [spec for spec in self.specs if spec.at <= 0]
        for spec in now:
            self._inject(self._fault(spec))
        self._greenlets.append(gevent.spawn(self._run, self.specs[len(now):]))

    def _fault(self, spec: FaultSpec) -> Fault:
        return FAULTS[spec.kind](spec.at, spec.duration, self.context, **spec.params)

    def _run(self, specs: list[FaultSpec]) -> None:
        for spec in specs:
            wait = self._started + spec.at - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            self._inject(self._fault(spec))

    def _inject(self, fault: Fault) -> None:
        at = round(time.monotonic() - self._started, 2)
        record = {"kind": fault.kind, "at_s": at, "duration_s": fault.lasts}
        self.records.append(record)
        started = time.perf_counter()
        error = None
        self._active.append(fault)  # undone at stop() even if the stop interrupts inject()
        try:
            record["detail"] = fault.inject()
            if fault.lasts:
                self._greenlets.append(gevent.spawn_later(fault.lasts, self._undo, fault))
            else:
                self._undo(fault)
        except (redis.RedisError, OSError, UsageError) as e:
            self._active.remove(fault)
            error = e
            record["error"] = f"{type(e).__name__}: {e}"
        if error is None or self.log_failures:
            log.warning("fault %s at +%.1fs: %s", fault.kind, at, record.get("detail") or record.get("error"))
        if self.environment is not None:
            self.environment.events.request.fire(
                request_type="fault", name=fault.kind, response_time=(time.perf_counter() - started) * 1000,
                response_length=0, exception=error, context={},
            )

    def _undo(self, fault: Fault) -> None:
        if fault not in self._active:
            return
        self._active.remove(fault)
        try:
            fault.undo()
        except (redis.RedisError, OSError) as e:
            log.error("could not undo fault %s: %s", fault.kind, e)

    def stop(self) -> None:
        """Cancel what has not run and undo what is still in force (maxclients restored, pause ended, drains back)."""
        gevent.killall(self._greenlets)
        self._greenlets = []
        for fault in list(reversed(self._active)):  # last in, first out: a pause is lifted before CONFIG SET runs
            self._undo(fault)


def check_feasible(specs: list[FaultSpec], *, has_drain: bool, managed_server: bool, ledger_on_target: bool) -> None:
    """What the configuration alone rules out: said before any server is started."""
    kinds = {s.kind for s in specs}
    if "kill-drain" in kinds and not has_drain:
        raise UsageError("fault kill-drain needs --drain inline: it kills the drain processes queuestorm started")
    if "restart-redis" in kinds:
        if not managed_server:
            raise UsageError("fault restart-redis needs a redis-server that queuestorm starts itself: leave "
                             "--redis-url empty and use --embedded redis-server (with --aof to keep data)")
        if ledger_on_target:
            raise UsageError("fault restart-redis would restart the server holding the ledger: give --ledger-url "
                             "another server (or 'embedded' for a second private one)")
    if "failover" in kinds and ledger_on_target:
        raise UsageError("fault failover would lose the ledger's own records with the target's: give --ledger-url "
                         "another server (or 'embedded' for a private one)")


def check_server_takes(specs: list[FaultSpec], *, real_redis: bool) -> None:
    needing = sorted({s.kind for s in specs if FAULTS[s.kind].real_redis})
    if needing and not real_redis:
        raise UsageError(f"fault(s) {', '.join(needing)} need a real redis-server (fakeredis has no CLIENT KILL / "
                         "PAUSE / CONFIG / SHUTDOWN)")

