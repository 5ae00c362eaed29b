"""Opening Redis connections from URLs, with timeouts that suit blocking fetches and errors a user can read."""

import os
import re
from urllib.parse import unquote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import topology
from ..model.errors import UsageError
from ..model.keys import valid_run_id

NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)  # the server is unreachable or went away

DEFAULT_SOCKET_TIMEOUT = 10.0
NO_INFO = "a server without INFO"
LOAD_CLIENT = "queuestorm-load"
DRAIN_CLIENT = "queuestorm-drain"
CONNECT_TIMEOUT = 5.0
BLOCKING_MARGIN = 3.0


SCHEMES = ("redis://", "rediss://", "unix://")
_CREDENTIAL_PARAMETER = re.compile(r"([?&;](?:sentinel_)?(?:password|username)=)[^&#;]*", re.IGNORECASE)


def redact(url) -> str:
    """The URL with every credential redis-py reads from it (userinfo, `password=` and `username=` query
    parameters) replaced by ***, safe to print. Never raises: it runs inside error paths."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    netloc_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    tail = _CREDENTIAL_PARAMETER.sub(r"\1***", tail)
    return f"{scheme}{sep}{netloc}{tail}"


def _secrets_of(url: str) -> list[str]:
    """The credential values a URL carries, raw and percent-decoded, to scrub them from any message."""
    text = str(url)
    rest = text.partition("://")[2] or text
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    found = []
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        found += [part for part in userinfo.split(":", 1) if part]
    found += [m.group(0).split("=", 1)[1] for m in _CREDENTIAL_PARAMETER.finditer(text)]
    return [value for secret in found if secret for value in {secret, unquote(secret)} if len(value) > 1]


def scrub(message: str, *urls: str) -> str:
    """`message` with every credential of `urls` in it replaced by ***: error texts may quote parts of a URL."""
    message = str(message)
    for url in urls:
        if url:
            for secret in sorted(_secrets_of(url), key=len, reverse=True):
                message = message.replace(secret, "***")
    return message


def client_name(base: str, run_id: str | None = None) -> str:
    """`base:RUN`, the CLIENT SETNAME by which a fault picks one run's connections; `run_id` None: the run that
    started this process, from $QS_RUN_ID. A process outside any run keeps the plain name."""
    run_id = os.environ.get("QS_RUN_ID", "") if run_id is None else run_id
    return f"{base}:{run_id}" if run_id and valid_run_id(run_id) else base


def url_of(client: redis.Redis) -> str:
    """A client's server as a URL without credentials, for messages about a client given without its URL."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def describe_redis_error(e: BaseException, url: str, role: str = "Redis") -> str:
    """The one line a user sees for a Redis or network error: what refused what, naming the URL (redacted)."""
    where = f"{role} at {redact(url)}"
    message = scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, url)
    upper = message.upper()
    if isinstance(e, redis.exceptions.NoPermissionError) or upper.startswith("NOPERM") or "NO PERMISSIONS" in upper:
        needed = re.search(r"run the '([^']+)' command", message)
        hint = f" (grant it: ACL SETUSER <user> +{needed[1]})" if needed else " (check the user's ACL: commands, keys)"
        return f"{where} refused a command: the user lacks a permission: {message}{hint}"
    if isinstance(e, redis.exceptions.ReadOnlyError) or upper.startswith("READONLY"):
        return f"{where} is a read-only replica: {message} (give the primary's URL)"
    if isinstance(e, redis.AuthenticationError) or upper.startswith(("NOAUTH", "WRONGPASS")):
        return f"{where} refused the credentials: {message}"
    if upper.startswith("WRONGTYPE"):
        return f"{where}: a key holds another Redis type than expected: {message}"
    if isinstance(e, NETWORK_ERRORS):
        return f"cannot reach {where}: {message}"
    return f"{where} answered with an error: {message}"


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
    if not str(url).startswith(SCHEMES + topology.SCHEMES):
        raise UsageError(f"{role} URL {redact(url)!r} must start with redis://, rediss://, unix://, "
                         f"redis+sentinel:// or redis+cluster://")
    if name in (LOAD_CLIENT, DRAIN_CLIENT):
        name = client_name(name)
    options = dict(socket_timeout=timeout, socket_connect_timeout=CONNECT_TIMEOUT, single_connection_client=single,
                   protocol=2, retry=Retry(NoBackoff(), 0), client_name=name)
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True  # a TCP option: a unix socket's connection class refuses the keyword
    if read_buffer:
        options["socket_read_size"] = read_buffer
    try:
        if topology.is_topology_url(url):
            client = topology.client_from_url(url, options)
        else:
            client = redis.Redis.from_url(url, **options)
        if check:
            client.ping()
        return client
    except (ValueError, TypeError) as e:
        raise UsageError(f"bad {role} URL {redact(url)!r}: {scrub(e, url)}") from None
    except (redis.RedisError, OSError) as e:
        if isinstance(e, redis.ResponseError) and not _is_refusal(e):
            raise UsageError(f"{role} at {redact(url)} answered PING with an error: {scrub(e, url)}") from None
        raise UsageError(describe_redis_error(e, url, role)) from None


def _is_refusal(e: redis.ResponseError) -> bool:
    refusals = (redis.AuthenticationError, redis.exceptions.NoPermissionError, redis.exceptions.ReadOnlyError)
    return isinstance(e, refusals) or str(e).upper().startswith(("NOAUTH", "WRONGPASS", "NOPERM"))


def server_description(client: redis.Redis) -> str:
    """'redis 7.0.15' where INFO works; servers without INFO (fakeredis) are named by what they lack."""
    try:
        info = client.info("server")
        return f"redis {info.get('redis_version', '?')}"
    except redis.ResponseError:
        if client.connection is not None:
            client.connection.disconnect()  # fakeredis's TCP server drops a connection after an unknown command
        return NO_INFO
