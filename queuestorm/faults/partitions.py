"""Partition faults, done by queuestorm's proxy and named as Toxiproxy names them (queuestorm.toxics):

    blackhole   connections accepted, nothing delivered (the hung socket)
    reset-peer  RST once a connection has carried `after_bytes` bytes or is `after_ms` old
    bandwidth   at most `rate_kb` KB/s per connection
    slicer      replies (by default) cut into `size`-byte pieces, `delay_ms` apart: partial reads

each for `duration` s, on the `target`'s connections: load, drain or both (the load and the inline drains then
go through proxies of their own, RouteProxies), one `direction`: upstream (commands), downstream (replies), both.
"""

from typing import ClassVar

from .kinds import CHOICES, FAULTS, Fault
from ..model.option_types import bounded

TARGETS = ("load", "drain", "both")
DIRECTIONS = ("upstream", "downstream", "both")


class Partition(Fault):
    needs = "proxy"
    needs_duration = True
    params = {"target": "both", "direction": "both"}
    toxic_params: ClassVar[tuple[str, ...]] = ()  # the toxic's arguments, in its constructor's order

    def inject(self) -> str:
        args = [getattr(self, name) for name in self.toxic_params]
        _set_toxic(self.context.proxy, self.target, self.direction, self.kind, *args)
        shown = ", ".join(f"{name} {getattr(self, name):g}" for name in self.toxic_params)
        return (f"{self.kind}{f' ({shown})' if shown else ''} on the {self.target} connections, "
                f"{self.direction}, for {self.duration:g}s")

    def undo(self) -> None:
        _set_toxic(self.context.proxy, self.target, "both", "none")


def _set_toxic(proxy, target: str, direction: str, kind: str, *args) -> None:
    if isinstance(proxy, RouteProxies):
        proxy.set_toxic(target, direction, kind, *args)
    else:  # the fault CLI's one proxy: whoever the user pointed at it
        proxy.set_toxic(direction, kind, *args)


class Blackhole(Partition):
    kind = "blackhole"


class ResetPeer(Partition):
    kind = "reset-peer"
    params = {**Partition.params, "after_bytes": 0, "after_ms": 0.0}
    bounds = {"after_bytes": bounded(int), "after_ms": bounded(high=3600000)}
    toxic_params = ("after_bytes", "after_ms")


class Bandwidth(Partition):
    kind = "bandwidth"
    params = {**Partition.params, "rate_kb": 100.0}
    bounds = {"rate_kb": bounded(low=0.001)}
    toxic_params = ("rate_kb",)


class Slicer(Partition):
    kind = "slicer"
    params = {**Partition.params, "direction": "downstream", "size": 8, "delay_ms": 1.0}
    bounds = {"size": bounded(int, low=1, high=65536), "delay_ms": bounded(high=60000)}
    toxic_params = ("size", "delay_ms")


PARTITIONS = (Blackhole, ResetPeer, Bandwidth, Slicer)


class RouteProxies:
    """Two proxies in front of the target, one the load's and one the inline drains', so that a partition fault
    can cut either alone; latency (--latency-ms, the latency fault) is set on both, as on the single proxy."""

    def __init__(self, url: str, delay_ms: float = 0.0, jitter_ms: float = 0.0):
        from ..redis.proxy import ProxyProcess  # importing the proxy's module patches this process for gevent

        self.load = ProxyProcess(url, delay_ms, jitter_ms)
        try:
            self.drain = ProxyProcess(url, delay_ms, jitter_ms)
        except BaseException:
            self.load.stop()
            raise
        self.url, self.port, self.drain_url = self.load.url, self.load.port, self.drain.url

    def of(self, target: str) -> list:
        return [self.load, self.drain] if target == "both" else [getattr(self, target)]

    def set_toxic(self, target: str, direction: str, kind: str, *args) -> None:
        for proxy in self.of(target):
            proxy.set_toxic(direction, kind, *args)

    def set_latency(self, delay_ms: float, jitter_ms: float) -> None:
        for proxy in self.of("both"):
            proxy.set_latency(delay_ms, jitter_ms)

    def reset(self) -> None:
        for proxy in self.of("both"):
            proxy.reset()

    def stop(self) -> None:
        for proxy in self.of("both"):
            proxy.stop()


def has_partitions(specs) -> bool:
    return any(spec.kind in PARTITION_KINDS for spec in specs)


def make_proxy(url: str, delay_ms: float, jitter_ms: float, specs):
    """The run's proxy: one for load and drains, or RouteProxies when a partition fault may cut one of them."""
    from ..redis.proxy import ProxyProcess

    return RouteProxies(url, delay_ms, jitter_ms) if has_partitions(specs) else ProxyProcess(url, delay_ms, jitter_ms)


PARTITION_KINDS = tuple(cls.kind for cls in PARTITIONS)
FAULTS.update({cls.kind: cls for cls in PARTITIONS})
for _kind in PARTITION_KINDS:
    CHOICES[(_kind, "target")] = TARGETS
    CHOICES[(_kind, "direction")] = DIRECTIONS
