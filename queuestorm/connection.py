"""Opening Redis connections from URLs, with timeouts that suit blocking fetches and errors a user can read."""

from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import UsageError

DEFAULT_SOCKET_TIMEOUT = 10.0
NO_INFO = "a server without INFO"
LOAD_CLIENT = "queuestorm-load"
DRAIN_CLIENT = "queuestorm-drain"
CONNECT_TIMEOUT = 5.0
BLOCKING_MARGIN = 3.0


def redact(url: str) -> str:
    """The URL with its password replaced by ***, safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def socket_timeout_for(block_seconds: float) -> float:
    """Longer than the server-side block, so a BRPOP never times out spuriously, yet finite, so a dead network is noticed."""
    return block_seconds + BLOCKING_MARGIN


def connect(url: str, *, block_seconds: float | None = None, check: bool = True, role: str = "Redis",
            single: bool = True, name: str | None = None, read_buffer: int | None = None) -> redis.Redis:
    """By default a client holding a single connection: each greenlet owns its own, so nothing waits on a pool.
    `single=False` gives a pooled client that several greenlets may share. `name` is the CLIENT SETNAME, by which
    faults find the load's and the drain's connections. `read_buffer` sizes the reply parser's buffer (redis-py's
    default is 16 KB per connection): a load connection that only reads short replies needs far less.

    Every command is tried exactly once (redis-py would retry 3 times by default): a retried LPUSH whose first
    attempt did reach the server is an invisible duplicate, and a load tool must show each failure as it happened.
    Callers retry where that is what they mean.
    """
    timeout = DEFAULT_SOCKET_TIMEOUT if block_seconds is None else socket_timeout_for(block_seconds)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"{role} URL {redact(url)!r} must start with redis://, rediss:// or unix://")
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True,
            single_connection_client=single,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
            client_name=name,
            **({"socket_read_size": read_buffer} if read_buffer else {}),
        )
        if check:
            client.ping()
        return client
    except (ValueError, TypeError) as e:
        raise UsageError(f"bad {role} URL {redact(url)!r}: {e}") from None
    except redis.AuthenticationError as e:
        raise UsageError(f"{role} at {redact(url)} refused the credentials: {e}") from None
    except redis.ResponseError as e:
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
            raise UsageError(f"{role} at {redact(url)} refused the credentials: {e}") from None
        raise UsageError(f"{role} at {redact(url)} answered PING with an error: {e}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        raise UsageError(f"cannot reach {role} at {redact(url)}: {e}") from None


def server_description(client: redis.Redis) -> str:
    """'redis 7.0.15' where INFO works; servers without INFO (fakeredis) are named by what they lack."""
    try:
        info = client.info("server")
        return f"redis {info.get('redis_version', '?')}"
    except redis.ResponseError:
        if client.connection is not None:
            client.connection.disconnect()  # fakeredis's TCP server drops a connection after an unknown command
        return NO_INFO
