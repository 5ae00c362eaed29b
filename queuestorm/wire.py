"""One command at a time on one redis-py Connection owned by one greenlet: the load's hot path.

redis.Redis.execute_command wraps every command in a lock, a retry object, a closure, HIMPORT parsing and telemetry
hooks, and gevent's socket.sendall adds a getsockopt() system call and chunking per write; together they cost
about half the time of an enqueue (docs/performance.md). This calls the Connection's own parts instead: its
packer, its parser, its connect and handshake, its error classes, its disconnect on failure. Only the write is
done here, with socket.send, because sendall is where gevent spends the time.

Errors read as they do through execute_command with retries off: a reset, EOF or timeout disconnects the
connection and raises redis.ConnectionError / redis.TimeoutError (the next call reconnects); a server error raises
redis.ResponseError and keeps the connection.
"""

import socket

import redis
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as _hiredis_pack


class DirectConnection:
    def __init__(self, client: redis.Redis):
        self.client = client  # owns the connection; close() goes through it
        self.conn = client.connection or client.connection_pool.get_connection()
        self._pack = self._pack_hiredis if HIREDIS_AVAILABLE else self.conn.pack_command

    @staticmethod
    def _pack_hiredis(*args):
        return [_hiredis_pack(args)]  # what redis-py's own hiredis packer returns, minus its per-call argument checks

    def call(self, *args):
        conn = self.conn
        packed = self._pack(*args)
        if conn._sock is None:
            conn.send_packed_command(packed, check_health=False)  # connects first, then sends
        else:
            self._send(packed)
        return conn.read_response()

    def _send(self, packed) -> None:
        conn = self.conn
        data = packed[0] if len(packed) == 1 else b"".join(packed)
        try:
            sent = conn._sock.send(data)
            if sent < len(data):  # the kernel's buffer took only part of it
                view = memoryview(data)
                while sent < len(data):
                    sent += conn._sock.send(view[sent:])
        except socket.timeout:
            conn.disconnect()
            raise redis.TimeoutError("Timeout writing to socket") from None
        except OSError as e:
            conn.disconnect()
            raise redis.ConnectionError(f"Error {e.errno} while writing to socket. {e.strerror or e}.") from None
        except BaseException:
            conn.disconnect()  # a half-written command leaves the connection unusable
            raise

    def close(self) -> None:
        self.client.close()
