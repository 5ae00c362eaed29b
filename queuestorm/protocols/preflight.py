"""What a server must allow before queuestorm sends it one job: the user may run every command the protocol (and the
ledger) needs, the server is not a read-only replica, and the protocol's keys hold the types it keeps there. Each
refusal is one line naming the URL (redacted) and what is missing, instead of a run of errors, or a drain whose
greenlets die one by one.

Commands are probed inside a MULTI that is then discarded: Redis checks ACL permissions and a replica's read-only
state when it queues a command, so nothing is ever run."""

import redis

from ..redis.connection import NETWORK_ERRORS, connect, describe_redis_error, redact
from ..model.errors import UsageError
from ..model.keys import RunKeys
from . import PROBE, Protocol

ROLES = ("enqueue", "drain")
REFUSALS = (redis.exceptions.NoPermissionError, redis.exceptions.ReadOnlyError)


def ledger_probe_commands(role: str) -> list[tuple]:
    """What the load's producers and the drains write to the ledger (ledger.py, drain_reports.py)."""
    keys = RunKeys("queuestorm-probe")
    if role == "enqueue":
        return [("INCR", keys.producer_counter), ("HSET", keys.producer(0), "issued", 0),
                ("SETRANGE", keys.enqueued(0), 0, PROBE), ("HSETNX", keys.meta, "probe", 1), ("GET", keys.completions)]
    return [("BITFIELD", keys.completed(0), "SET", "u1", 0, 1), ("HINCRBY", keys.e2e, 0, 1),
            ("INCRBY", keys.completions, 1), ("HINCRBY", keys.duplicates(0), 0, 1),
            ("HSET", keys.drain("probe"), "x", 1), ("EXPIRE", keys.drain("probe"), 1), ("SADD", keys.drains, "probe"),
            ("EXPIRE", keys.drains, 1)]


def refused_commands(client: redis.Redis, commands: list[tuple]) -> list[tuple[str, redis.ResponseError]]:
    """(command name, the server's refusal) for each command this client's user may not run here."""
    connection = client.connection_pool.get_connection()
    refused = []
    try:
        connection.send_command("MULTI")
        try:
            connection.read_response()
        except redis.ResponseError as e:
            return [("MULTI", e)] if isinstance(e, REFUSALS) else []  # a server without MULTI: no probe
        for command in commands:
            connection.send_command(*command)
            try:
                connection.read_response()
            except redis.ResponseError as e:  # an unknown command (an older server) is not a refusal
                if isinstance(e, REFUSALS):
                    refused.append((str(command[0]).upper(), e))
        connection.send_command("DISCARD")
        try:
            connection.read_response()
        except redis.ResponseError:
            pass
    except NETWORK_ERRORS:
        connection.disconnect()  # fakeredis's TCP server drops a connection after a command it does not know
    finally:
        client.connection_pool.release(connection)
    return refused


def require_permissions(client: redis.Redis, protocol: Protocol, url: str, role: str = "drain", *,
                        ledger_url: str = "", what: str = "target Redis") -> None:
    """Raise one UsageError line when the server behind `client` refuses a command `role` needs; with `ledger_url`,
    the ledger's server is probed for the ledger's commands too (the same client when it is the same URL)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    _raise_refusals(refused_commands(client, protocol.probe_commands().get(role, [])), url, what,
                    f"the {protocol.name} {role}")
    if not ledger_url:
        return
    if ledger_url == url:
        _raise_refusals(refused_commands(client, ledger_probe_commands(role)), url, what, f"the {role}'s ledger")
        return
    ledger = connect(ledger_url, role="ledger Redis")
    try:
        _raise_refusals(refused_commands(ledger, ledger_probe_commands(role)), ledger_url, "ledger Redis",
                        f"the {role}'s ledger")
    finally:
        ledger.close()


def _raise_refusals(refused: list[tuple[str, redis.ResponseError]], url: str, what: str, needs: str) -> None:
    if not refused:
        return
    names = ", ".join(dict.fromkeys(name for name, _ in refused))
    first = refused[0][1]
    where = f"{what} at {redact(url)}"
    if isinstance(first, redis.exceptions.ReadOnlyError):
        raise UsageError(f"{where} is a read-only replica: {needs} writes ({names}); give the primary's URL")
    grant = " ".join(f"+{name.lower()}" for name in dict.fromkeys(name for name, _ in refused))
    raise UsageError(f"{where} refuses commands {needs} needs: {names} ({str(first).splitlines()[0]}); grant them "
                     f"(ACL SETUSER <user> {grant}) and the keys they use")


def check_key_types(client: redis.Redis, protocol: Protocol, url: str, what: str = "target Redis") -> None:
    """Raise one UsageError line when a key the protocol declares holds another Redis type (another protocol's
    queue, or another application's key); absent keys pass."""
    declared = protocol.declared_keys()
    if not declared:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for key in declared:
            pipe.type(key.key)
        found = [t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute()]
    except redis.RedisError as e:
        raise UsageError(describe_redis_error(e, url, what)) from None
    for key, kind in zip(declared, found):
        if kind not in ("none", key.type):
            raise UsageError(f"key {key.key!r} on {redact(url)} holds a {kind}, but --protocol {protocol.name} keeps "
                             f"a {key.type} there (another protocol's queue, or another application's key? choose "
                             "another --queue)")


def ready_for(client: redis.Redis, protocol: Protocol, url: str, role: str, ledger_url: str = "") -> None:
    """Both checks, before `role` (enqueue: the load; drain: a consumer) sends anything."""
    require_permissions(client, protocol, url, role, ledger_url=ledger_url)
    check_key_types(client, protocol, url)
