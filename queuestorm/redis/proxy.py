"""A TCP proxy that adds delay and jitter between clients and Redis, each way: what Sidekiq's benchmark does with
Toxiproxy, and how a laptop simulates a distant hosted Redis. Runs as its own process:

    python -m queuestorm.proxy HOST PORT [DELAY_MS [JITTER_MS [LISTEN_PORT]]]

prints `PORT n` once listening, then takes `latency DELAY_MS JITTER_MS` and `toxic DIRECTION KIND [ARGS]` lines
(queuestorm.toxics; DIRECTION upstream, downstream or both; KIND none lifts it) on stdin.
Byte order is kept in each direction: a chunk is never released before the one read before it.
"""

from gevent import monkey

monkey.patch_all()

import random  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from gevent.server import StreamServer  # noqa: E402
from gevent.socket import create_connection  # noqa: E402

from ..model.errors import UsageError  # noqa: E402
from .toxics import DIRECTIONS, ResetConnection, parse_toxic  # noqa: E402


class LatencyProxy:
    def __init__(self, host: str, port: int, delay_ms: float = 0.0, jitter_ms: float = 0.0):
        self.target = (host, port)
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.toxics = dict.fromkeys(DIRECTIONS)

    def _sample_seconds(self) -> float:
        jitter = random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.delay_ms + jitter) / 1000

    def handle(self, client, _address) -> None:
        try:
            upstream = create_connection(self.target)
        except OSError:
            client.close()
            return
        for end in (client, upstream):  # as Toxiproxy's (Go's) sockets: Nagle would hold small writes ~40 ms
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        forward = gevent.spawn(self._pump, client, upstream, "upstream")
        self._pump(upstream, client, "downstream")
        forward.join()
        client.close()
        upstream.close()

    def _pump(self, source, sink, direction: str = "upstream") -> None:
        chunks: Queue = Queue()
        writer = gevent.spawn(self._release, chunks, sink)
        last, opened_at, carried = 0.0, time.monotonic(), 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                toxic = self.toxics[direction]
                pieces = [(0.0, data)] if toxic is None else toxic.shape(data, opened_at, carried)
                carried += len(data)
                for delay, piece in pieces:
                    last = max(last, time.monotonic() + self._sample_seconds()) + delay
                    chunks.put((last, piece))
        except ResetConnection:
            for end in (source, sink):
                _reset(end)
        except OSError:
            pass
        chunks.put(None)
        writer.join()
        try:
            sink.shutdown(1)
        except OSError:
            pass

    @staticmethod
    def _release(chunks: Queue, sink) -> None:
        for item in chunks:
            if item is None:
                return
            release_at, data = item
            wait = release_at - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            try:
                sink.sendall(data)
            except OSError:
                return

    def control(self, stream) -> None:
        for line in stream:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "latency":
                self.delay_ms, self.jitter_ms = float(parts[1]), float(parts[2])
            elif len(parts) >= 3 and parts[0] == "toxic":
                for direction in DIRECTIONS if parts[1] == "both" else (parts[1],):
                    self.toxics[direction] = parse_toxic(parts[2:])


def _reset(sock) -> None:
    """Close with an RST, not a FIN: SO_LINGER on, timeout 0."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    delay = float(argv[2]) if len(argv) > 2 else 0.0
    jitter = float(argv[3]) if len(argv) > 3 else 0.0
    listen_port = int(argv[4]) if len(argv) > 4 else 0
    proxy = LatencyProxy(host, port, delay, jitter)
    server = StreamServer(("127.0.0.1", listen_port), proxy.handle, backlog=1024)
    try:
        server.start()
    except OSError as e:
        print(f"ERROR {e.strerror}", flush=True)
        return
    print(f"PORT {server.server_port}", flush=True)
    proxy.control(FileObject(sys.stdin, "r"))  # returns when the parent closes our stdin
    server.stop(timeout=1)


class ProxyProcess:
    """The parent's handle on a proxy process in front of `url`."""

    def __init__(self, url: str, delay_ms: float = 0.0, jitter_ms: float = 0.0, listen_port: int = 0):
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise UsageError(f"the latency proxy needs a TCP Redis URL of one server, not {parts.scheme}://")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "queuestorm.redis.proxy", parts.hostname or "127.0.0.1", str(parts.port or 6379),
             str(delay_ms), str(jitter_ms), str(listen_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self._process.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise UsageError(f"the latency proxy could not listen on 127.0.0.1:{listen_port}: "
                             f"{line.removeprefix('ERROR ') or 'it exited'}")
        self.port = int(line.split()[1])
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        self.url = urlunsplit((parts.scheme, f"{auth}127.0.0.1:{self.port}", parts.path, parts.query, ""))
        self.base = (delay_ms, jitter_ms)

    def set_latency(self, delay_ms: float, jitter_ms: float) -> None:
        self._process.stdin.write(f"latency {delay_ms} {jitter_ms}\n")
        self._process.stdin.flush()

    def reset(self) -> None:
        self.set_latency(*self.base)

    def set_toxic(self, direction: str, kind: str = "none", *args: float) -> None:
        self._process.stdin.write(" ".join(["toxic", direction, kind, *map(str, args)]) + "\n")
        self._process.stdin.flush()

    def stop(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
                self._process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
