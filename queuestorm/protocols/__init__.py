"""Wire protocols by name. Adding one means adding a module and a line here, nothing else."""

from ..model.errors import UsageError
from .base import PROBE, DeclaredKey, Delivery, Protocol
from .beequeue import BeeQueueProtocol
from .bullmq import BullMQProtocol
from .celery import CeleryProtocol
from .gocraft import GocraftProtocol
from .list import ListProtocol
from .reliable import ReliableProtocol
from .rq import RQProtocol
from .sidekiq import GoWorkers2Protocol, SidekiqProtocol
from .stream import StreamProtocol
from ..model.settings import DEFAULT_VISIBILITY_TIMEOUT
import redis

PROTOCOLS: dict[str, type[Protocol]] = {cls.name: cls for cls in (
    ListProtocol, ReliableProtocol, StreamProtocol, RQProtocol, SidekiqProtocol, GoWorkers2Protocol, CeleryProtocol,
    BullMQProtocol, BeeQueueProtocol, GocraftProtocol,
)}


def protocol_class(name: str) -> type[Protocol]:
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise UsageError(f"unknown protocol {name!r} (known: {known})") from None


def make_protocol(name: str, queue: str, consumer_id: str | None = None,
                  visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT) -> Protocol:
    return protocol_class(name)(queue, consumer_id, visibility_timeout)


def require_server_version(client, protocol: Protocol, where: str) -> None:
    """One clear line when the server is too old for the protocol; servers without INFO (fakeredis) pass."""
    try:
        version = client.info("server")["redis_version"]
    except redis.ResponseError:
        if client.connection is not None:
            client.connection.disconnect()  # fakeredis's TCP server drops a connection after an unknown command
        return
    have = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    if have < protocol.min_redis_version:
        need = ".".join(map(str, protocol.min_redis_version))
        raise UsageError(f"protocol {protocol.name!r} needs Redis >= {need}; {where} runs {version}")


__all__ = ["PROBE", "DeclaredKey", "Delivery", "Protocol", "PROTOCOLS", "protocol_class", "make_protocol", "require_server_version"]
