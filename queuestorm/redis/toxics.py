"""What the proxy does to the bytes of one direction while a partition fault is on, named as Toxiproxy names it.

Each toxic turns one chunk read from a socket into the pieces to write, each with the delay before it may go:
[] drops the chunk, ResetConnection aborts the connection with an RST.
"""

import time

DIRECTIONS = ("upstream", "downstream")  # toward Redis (commands), toward the client (replies)


class ResetConnection(Exception):
    pass


class Toxic:
    kind = ""

    def shape(self, data: bytes, opened_at: float, carried: int) -> list[tuple[float, bytes]]:
        """`opened_at`: when this connection was made; `carried`: bytes it has carried this way before `data`."""
        raise NotImplementedError


class Blackhole(Toxic):
    """Connections are accepted and kept; nothing they send is delivered: the hung-socket case."""
    kind = "blackhole"

    def shape(self, data, opened_at, carried):
        return []


class ResetPeer(Toxic):
    """RST once a connection has carried `after_bytes` bytes this way or is `after_ms` old (0: not by that)."""
    kind = "reset-peer"

    def __init__(self, after_bytes: int = 0, after_ms: float = 0.0):
        self.after_bytes = int(after_bytes)
        self.after_ms = float(after_ms)
        self.since = time.monotonic()

    def shape(self, data, opened_at, carried):
        age_ms = (time.monotonic() - max(opened_at, self.since)) * 1000
        if carried + len(data) >= self.after_bytes and (not self.after_ms or age_ms >= self.after_ms):
            raise ResetConnection()
        return [(0.0, data)]


class Bandwidth(Toxic):
    """At most `rate_kb` KB/s each connection, this way."""
    kind = "bandwidth"

    def __init__(self, rate_kb: float = 100.0):
        self.bytes_per_second = max(1.0, float(rate_kb) * 1024)

    def shape(self, data, opened_at, carried):
        return [(len(data) / self.bytes_per_second, data)]


class Slicer(Toxic):
    """Each chunk cut into pieces of `size` bytes, each held `delay_ms` after the one before: partial reads."""
    kind = "slicer"

    def __init__(self, size: int = 8, delay_ms: float = 1.0):
        self.size = max(1, int(size))
        self.delay = float(delay_ms) / 1000

    def shape(self, data, opened_at, carried):
        return [(self.delay, data[i:i + self.size]) for i in range(0, len(data), self.size)]


TOXICS = {cls.kind: cls for cls in (Blackhole, ResetPeer, Bandwidth, Slicer)}


def parse_toxic(words: list[str]) -> Toxic | None:
    """`KIND [NUMBER...]` as the proxy's control line carries it; `none` for no toxic."""
    if not words or words[0] == "none":
        return None
    return TOXICS[words[0]](*(float(w) for w in words[1:]))
