"""Targets that are more than one server: a Sentinel-managed primary (redis+sentinel://) and a Redis Cluster
(redis+cluster://). connection.connect() hands such URLs here; everything else stays redis-py's plain client.

    redis+sentinel://[[user]:password@]host:26379[,host2:26379...]/MASTERNAME[/db][?sentinel_password=...]
    redis+cluster://[[user]:password@]host:port[,host2:port...]   (parsed; runs refuse it for now)

The password is the primary's (or the cluster nodes'); sentinels that need their own take `sentinel_password`.
A Sentinel client asks the sentinels for the primary's address on every (re)connect, so after a failover the next
command goes to the new primary; the command that met the failover fails as any broken connection does.
"""

import threading
from typing import NamedTuple
from urllib.parse import parse_qs, unquote

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from ..model.errors import UsageError

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
SCHEMES = (SENTINEL_SCHEME, CLUSTER_SCHEME)
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_QUERY = ("sentinel_password", "sentinel_username")

# one Sentinel manager (and its few connections to the sentinels) per process and URL, shared by every client
_managers: dict[tuple, Sentinel] = {}
_managers_lock = threading.Lock()


class SentinelTarget(NamedTuple):
    nodes: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_username: str | None
    sentinel_password: str | None


class ClusterTarget(NamedTuple):
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None


def is_topology_url(url) -> bool:
    return str(url).startswith(SCHEMES)


def _split(url: str, scheme: str) -> tuple[str | None, str | None, str, str, dict]:
    """(username, password, host list, path, query) of a URL whose netloc may list several hosts."""
    rest = url[len(scheme):]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, netloc, path, {k: v[-1] for k, v in parse_qs(query).items()}


def _nodes(hosts: str, default_port: int | None, what: str) -> list[tuple[str, int]]:
    nodes = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = port, ""
        if not host:
            raise ValueError(f"{what} {item!r} has no host")
        if not port and default_port is None:
            raise ValueError(f"{what} {item!r} has no port")
        try:
            nodes.append((host.strip("[]"), int(port) if port else default_port))
        except ValueError:
            raise ValueError(f"{what} {item!r}: the port is not a number") from None
    return nodes


def parse_sentinel_url(url: str) -> SentinelTarget:
    username, password, hosts, path, query = _split(url, SENTINEL_SCHEME)
    unknown = sorted(set(query) - set(SENTINEL_QUERY))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(SENTINEL_QUERY)})")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("expected /MASTERNAME or /MASTERNAME/DB after the sentinels")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"the database {parts[1]!r} is not a number")
    return SentinelTarget(_nodes(hosts, DEFAULT_SENTINEL_PORT, "sentinel"), unquote(parts[0]),
                          int(parts[1]) if len(parts) == 2 else 0, username, password,
                          query.get("sentinel_username"), query.get("sentinel_password"))


def parse_cluster_url(url: str) -> ClusterTarget:
    username, password, hosts, path, query = _split(url, CLUSTER_SCHEME)
    if path.strip("/") not in ("", "0"):
        raise ValueError("a cluster has only database 0")
    if query:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(query))}")
    return ClusterTarget(_nodes(hosts, None, "cluster node"), username, password)


def client_from_url(url: str, options: dict):
    """A client for a redis+sentinel:// URL, with connect()'s connection options; a redis+cluster:// URL is
    checked, then refused (see refuse_cluster_runs)."""
    if url.startswith(SENTINEL_SCHEME):
        return sentinel_client(parse_sentinel_url(url), options)
    parse_cluster_url(url)
    refuse_cluster_runs(url, "the URL")


def _manager(target: SentinelTarget, options: dict) -> Sentinel:
    sentinel_options = {name: options[name] for name in ("socket_timeout", "socket_connect_timeout",
                                                          "socket_keepalive", "retry") if name in options}
    if target.sentinel_password:
        sentinel_options.update(username=target.sentinel_username, password=target.sentinel_password)
    key = (tuple(target.nodes), target.sentinel_username, target.sentinel_password,
           tuple(sorted((k, repr(v)) for k, v in sentinel_options.items() if k != "retry")))
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None:
            manager = _managers[key] = Sentinel(target.nodes, sentinel_kwargs=sentinel_options)
        return manager


class FollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks for the primary's address on every reconnect. redis-py reconnects a
    dropped connection of a single-connection client through connect_check_health(), which skips the Sentinel
    lookup and dials the old primary again, for ever."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._addressed = False  # inside connect_to(), which has just looked the address up

    def connect_to(self, address):
        self._addressed = True
        try:
            super().connect_to(address)
        finally:
            self._addressed = False

    def connect_check_health(self, *args, **kwargs):
        if self._sock is None and not self._addressed and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super().connect_check_health(*args, **kwargs)


def sentinel_client(target: SentinelTarget, options: dict) -> redis.Redis:
    options = dict(options)
    single = options.pop("single_connection_client", False)
    pool = SentinelConnectionPool(target.service, _manager(target, options), is_master=True, db=target.db,
                                  username=target.username, password=target.password,
                                  connection_class=FollowingConnection, **options)
    return redis.Redis(connection_pool=pool, single_connection_client=single)


def sentinel_of(client) -> tuple[Sentinel, str] | None:
    """(the Sentinel manager, the master's name) behind a client connect() made from a redis+sentinel:// URL."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        return pool.sentinel_manager, pool.service_name
    return None


def primary_address(client) -> tuple[str, int] | None:
    """Where the sentinels say the primary is now; None for a client of a single server."""
    found = sentinel_of(client)
    if found is None:
        return None
    manager, service = found
    return manager.discover_master(service)


def refuse_cluster_runs(url: str, option: str) -> None:
    """Runs do not drive a cluster yet: their protocols' multi-key commands and the drain's MULTI/EXEC assume one
    server. One line, before anything starts."""
    if str(url).startswith(CLUSTER_SCHEME):
        raise UsageError(f"{option}: redis+cluster:// targets are not supported by runs yet (protocols and ledger "
                         f"assume one server); give a redis:// or redis+sentinel:// URL")
