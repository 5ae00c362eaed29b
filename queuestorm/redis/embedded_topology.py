"""`--embedded sentinel`: a primary, a replica and three sentinels, private redis-servers on free loopback ports,
started by one command and torn down at the end. The replica replicates through queuestorm's proxy, so that a
forced failover can hold the replication stream back (real replication lag) before it kills the primary.
"""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .embedded import START_TIMEOUT, EmbeddedRedis, _free_port
from ..model.errors import UsageError
from .connection import NETWORK_ERRORS

TOPOLOGY_KINDS = ("sentinel",)
MASTER_NAME = "queuestorm"
SENTINELS = 3
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 180000  # Sentinel's default; also how long before it re-points a replica it finds elsewhere
READY_TIMEOUT = 30.0
POLL_SECONDS = 0.05


def make_embedded(kind: str, aof: bool = False):
    """The embedded target of `--embedded KIND`: a topology, or the single server of embedded.py."""
    return EmbeddedSentinel(aof=aof) if kind == "sentinel" else EmbeddedRedis(kind, aof=aof)


def server_kind(kind: str) -> str:
    """The kind of a single embedded server (the ledger's) when the target is a topology."""
    return "redis-server" if kind in TOPOLOGY_KINDS else kind


def _admin(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def wait_until(condition, what: str, timeout: float = READY_TIMEOUT, sleep=time.sleep):
    """Poll `condition()` until it returns something true; UsageError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
            if found:
                return found
        except (*NETWORK_ERRORS, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise UsageError(f"the embedded topology: {what} within {timeout:g}s")
        sleep(POLL_SECONDS)


class EmbeddedSentinel:
    kind = "sentinel"

    def __init__(self, aof: bool = False):
        if not shutil.which("redis-server"):
            raise UsageError("--embedded sentinel needs redis-server on the PATH")
        self.aof = aof
        self.dir = ""
        self.ports: dict[str, int] = {}  # "primary", "replica", "sentinel1".. -> port
        self.processes: dict[str, subprocess.Popen] = {}
        self.link = None  # the ProxyProcess  # the replica's way to the primary
        self.url = ""
        self.description = ""

    @property
    def sentinel_ports(self) -> list[int]:
        return [self.ports[f"sentinel{i}"] for i in range(1, SENTINELS + 1)]

    def start(self) -> str:
        self.dir = tempfile.mkdtemp(prefix="queuestorm-sentinel-")
        atexit.register(self.stop)
        try:
            self._start_servers()
        except BaseException:
            self.stop()
            raise
        version = _admin(self.ports["primary"]).info("server")["redis_version"]
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.url = f"redis+sentinel://{nodes}/{MASTER_NAME}/0"
        self.description = (f"a private Sentinel topology of redis-server {version} started by queuestorm: primary "
                            f"127.0.0.1:{self.ports['primary']}, replica 127.0.0.1:{self.ports['replica']}, "
                            f"sentinels on {nodes}")
        return self.url

    def _start_servers(self) -> None:
        from .proxy import ProxyProcess  # importing the proxy's module patches this process for gevent

        self._spawn_server("primary", _free_port())
        self.link = ProxyProcess(f"redis://127.0.0.1:{self.ports['primary']}/0")
        self._spawn_server("replica", _free_port(), "--replicaof", "127.0.0.1", str(self.link.port))
        wait_until(lambda: _admin(self.ports["replica"]).info("replication").get("master_link_status") == "up",
                   "the replica did not sync with the primary")
        for i in range(1, SENTINELS + 1):
            self._spawn_sentinel(f"sentinel{i}", _free_port())
        for port in self.sentinel_ports:
            wait_until(lambda: self._sentinel_sees_all(port), "the sentinels did not find the replica and each other")

    def _sentinel_sees_all(self, port: int) -> bool:
        state = _admin(port).execute_command("SENTINEL", "MASTER", MASTER_NAME)
        fields = dict(zip(state[::2], state[1::2])) if isinstance(state, list) else state
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
        return int(fields["num-slaves"]) >= 1 and int(fields["num-other-sentinels"]) >= SENTINELS - 1

    def _spawn_server(self, name: str, port: int, *extra: str) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        directory = os.path.join(self.dir, name)
        os.makedirs(directory, exist_ok=True)
        self.ports[name] = port
        self.processes[name] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", directory, "--loglevel", "warning", "--maxclients", "10000", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_answers(name)

    def _spawn_sentinel(self, name: str, port: int) -> None:
        path = os.path.join(self.dir, f"{name}.conf")
        with open(path, "w") as f:  # a sentinel rewrites its own file: it must be one of its own
            f.write(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['primary']} 2\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n")
        self.ports[name] = port
        self.processes[name] = subprocess.Popen(["redis-server", path, "--sentinel", "--loglevel", "warning"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_answers(name)

    def _wait_answers(self, name: str) -> None:
        process, port = self.processes[name], self.ports[name]

        def answers():
            if process.poll() is not None:
                raise UsageError(f"the embedded {name} on port {port} exited at start (code {process.returncode})")
            return _admin(port).ping()
        wait_until(answers, f"the {name} did not answer PING", START_TIMEOUT)

    # what the failover fault does ---------------------------------------------------------------------------------

    def name_of(self, port: int) -> str:
        return next(name for name, p in self.ports.items() if p == port)

    def hold_replication(self) -> None:
        """From now on nothing reaches the replica through its link: writes acknowledged by the primary stay there."""
        self.link.set_toxic("both", "blackhole")

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> None:
        """Start a killed server again on its port, empty (or from its AOF); the sentinels make it a replica."""
        self._spawn_server(name, self.ports[name])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = {}
        if self.link is not None:
            self.link.stop()
            self.link = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""
