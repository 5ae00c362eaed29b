"""One command at a time on one redis-py Connection owned by one greenlet: the load's hot path.

redis.Redis.execute_command wraps every command in a lock, a retry object, a closure, HIMPORT parsing and telemetry
hooks, and gevent's socket.sendall adds a getsockopt() system call and chunking per write; together they cost
about half the time of an enqueue (docs/performance.md). This calls the Connection's own parts instead: its
packer, its parser, its connect and handshake, its error classes, its disconnect on failure. Only the write is
done here, with socket.send, because sendall is where gevent spends the time.

Under gevent (Locust's case) three more things are done here, measured in docs/performance.md:
- the reply is waited for before the first read, so a read does not first fail with EAGAIN;
- `round_trip` is the Redis round trip: from just before the send to the kernel's receive timestamp of the reply
  (SO_TIMESTAMPNS), so the time a greenlet waits for the event loop to run it again, reply in hand, is not
  counted. The reply's first bytes are read here with recvmsg_into, into redis-py's hiredis reader, which parses
  them as if it had read them itself (a separate MSG_PEEK for the stamp cost a system call per command). None
  where no stamp came back: not Linux, TLS, another parser, the system's first packets after time-stamping was
  switched on;
- the socket timeout is enforced by one hub timer for all connections (`Watchdog`) rather than by a gevent
  Timeout started and cancelled on every wait: a call still in flight after the timeout gets socket.timeout thrown
  into its greenlet, as gevent's Timeout does, within one tick after the timeout (a tenth of it, 50 ms to 1 s).

Errors read as they do through execute_command with retries off: a reset, EOF or timeout disconnects the
connection and raises redis.ConnectionError / redis.TimeoutError (the next call reconnects); a server error raises
redis.ResponseError and keeps the connection.
"""

import socket
import struct
import sys
import time
import weakref

import redis
from gevent import get_hub, getcurrent, monkey
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as _hiredis_pack
    from redis._parsers.hiredis import NOT_ENOUGH_DATA  # what redis-py's hiredis reader returns for a partial reply
else:
    NOT_ENOUGH_DATA = False

MIN_TICK, MAX_TICK = 0.05, 1.0
SO_TIMESTAMPNS = 35  # Linux's; not in Python's socket module
_TIMESPEC = struct.Struct("qq")
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class Watchdog:
    """Throws socket.timeout into the greenlet of any call in flight for longer than its connection's timeout."""

    def __init__(self):
        self.calls = weakref.WeakSet()
        self.timer = None
        self.tick = MAX_TICK

    def watch(self, call: "DirectConnection") -> None:
        self.calls.add(call)
        tick = min(MAX_TICK, max(MIN_TICK, call.timeout / 10))
        if self.timer is None or tick < self.tick:
            if self.timer is not None:
                self.timer.close()
            self.tick = tick
            self.timer = get_hub().loop.timer(tick, tick, ref=False)  # never keeps the process alive by itself
            self.timer.start(self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        late = [c for c in self.calls if c.since and now - c.since > c.timeout]
        for call in late:
            # each throw runs that greenlet until it waits again, by when a call seen late may have ended or a new
            # one started after `now`
            if call.since and now - call.since > call.timeout and not call.owner.dead:
                call.owner.throw(socket.timeout("timed out"))


_watchdogs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # one per hub (per thread)


class DirectConnection:
    def __init__(self, client: redis.Redis):
        self.client = client  # owns the connection; close() goes through it
        self.conn = client.connection or client.connection_pool.get_connection()
        self._pack = self._pack_hiredis if HIREDIS_AVAILABLE else self.conn.pack_command
        self.since, self.owner = 0.0, None
        self.round_trip: float | None = None  # seconds, of the last call()
        self.sent = False  # whether any byte of the last call()'s command reached the kernel
        self.timeout = self.conn.socket_timeout
        self._gevent = monkey.is_module_patched("socket")
        if self._gevent and self.timeout:
            self.conn.socket_timeout = None  # the watchdog enforces it; the handshake and reads wait without a Timeout
            hub = get_hub()
            if hub not in _watchdogs:
                _watchdogs[hub] = Watchdog()
            _watchdogs[hub].watch(self)
            if self.conn._sock is not None:
                self.conn._sock.settimeout(None)
        self._stamping = False
        if self._gevent and _STAMP_SPACE and sys.platform.startswith("linux"):
            self.conn.register_connect_callback(self._stamp_replies)
            if self.conn._sock is not None:
                self._stamp_replies(self.conn)

    def _stamp_replies(self, conn) -> None:
        """On every new socket: ask the kernel to time-stamp what arrives (plain TCP or Unix sockets only)."""
        sock, parser = conn._sock, conn._parser
        # a TLS socket's bytes must go through its own reads; the reply goes straight into a hiredis reader
        self._stamping = (type(sock) is socket.socket and isinstance(getattr(parser, "_buffer", None), bytearray)
                          and getattr(parser, "_reader", None) is not None)
        if self._stamping:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self._stamping = False

    @staticmethod
    def _pack_hiredis(*args):
        return [_hiredis_pack(args)]  # what redis-py's own hiredis packer returns, minus its per-call argument checks

    def call(self, *args):
        conn = self.conn
        packed = self._pack(*args)
        self.owner, self.since = getcurrent(), time.monotonic()
        self.round_trip, self.sent = None, False
        try:
            if conn._sock is None:
                conn.connect()  # a failure here sent nothing of the command
            self._send(packed, time.time())  # the kernel's stamps are wall-clock time
            return conn.read_response()
        finally:
            self.since = 0.0

    def call_many(self, commands: list[tuple]) -> list:
        """Every command written at once, then every reply read: one round trip. A command's error reply is its
        redis.ResponseError in its place in the list; a network error raises, as call() does."""
        conn = self.conn
        pack = self._pack
        packed = [part for command in commands for part in pack(*command)]
        self.owner, self.since = getcurrent(), time.monotonic()
        self.round_trip, self.sent = None, False
        try:
            if conn._sock is None:
                conn.connect()  # a failure here sent nothing of the batch
            self._send(packed, time.time())
            # replies already in hiredis's buffer are taken from it directly: redis-py's read_response costs
            # more than the parse itself, and only a reply not yet all here needs its socket read
            reader = getattr(conn._parser, "_reader", None)
            replies = []
            for _ in commands:
                reply = reader.gets() if reader is not None else NOT_ENOUGH_DATA
                if reply is NOT_ENOUGH_DATA:
                    try:
                        reply = conn.read_response()
                    except redis.ResponseError as e:
                        reply = e
                replies.append(reply)
            return replies
        except BaseException:
            if self.sent:
                conn.disconnect()  # replies still on their way would be read as the next call's
            raise
        finally:
            self.since = 0.0

    def run(self, function, *args):
        """`function(redis_client, *args)`: a command through redis-py on this connection, under the same watchdog."""
        self.owner, self.since = getcurrent(), time.monotonic()
        self.sent = False
        try:
            if self.conn._sock is None:
                self.conn.connect()  # a failure here sent nothing
            self.sent = True  # from here redis-py does not say how far it got
            return function(self.client, *args)
        finally:
            self.since = 0.0

    def _send(self, packed, sent_at: float) -> None:
        """Writes the command and, under gevent, waits for the reply and reads its first bytes with their stamp."""
        conn = self.conn
        data = packed[0] if len(packed) == 1 else b"".join(packed)
        sock = conn._sock
        doing = "writing to"
        try:
            sent = sock.send(data)
            self.sent = True
            if sent < len(data):  # the kernel's buffer took only part of it
                view = memoryview(data)
                while sent < len(data):
                    sent += sock.send(view[sent:])
            if self._gevent:
                doing = "reading from"
                sock._wait(sock._read_event)
                if self._stamping:
                    self._read_stamped(sock, sent_at)
        except socket.timeout:
            conn.disconnect()
            raise redis.TimeoutError(f"Timeout {doing} socket") from None
        except OSError as e:
            conn.disconnect()
            raise redis.ConnectionError(f"Error {e.errno} while {doing} socket. {e.strerror or e}.") from None
        except BaseException:
            conn.disconnect()  # a half-written command, or a reply still on its way, would be misread later
            raise

    def _read_stamped(self, sock, sent_at: float) -> None:
        parser = self.conn._parser
        try:
            read, ancillary, _, _ = sock._sock.recvmsg_into([parser._buffer], _STAMP_SPACE)
        except BlockingIOError:
            return  # woken with nothing to read: redis-py's read waits for it, unstamped
        if read:  # at EOF, redis-py's own read finds the EOF again and raises as it always does
            parser._reader.feed(parser._buffer, 0, read)
        if ancillary:
            level, kind, data = ancillary[0]
            if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET:
                seconds, nanoseconds = _TIMESPEC.unpack(data)
                round_trip = seconds - sent_at + nanoseconds * 1e-9
                self.round_trip = round_trip if round_trip >= 0 else None  # the clock stepped back

    def close(self) -> None:
        self.client.close()
