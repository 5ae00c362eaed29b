"""`stream`: XADD; one consumer group (created from id 0, so nothing added before it is missed); XREADGROUP;
XACK + XDEL on completion; XAUTOCLAIM returns entries idle longer than the visibility timeout to the stream.

Acknowledged entries are deleted, so the stream holds only jobs not yet done and its length is the backlog.
queuestorm never trims (no MAXLEN): trimming deletes entries whether or not a consumer has read them, and every
entry trimmed unread is a lost job. The protocol assumes one consumer group per stream (the drain fleet)."""

import redis

from ..errors import UsageError
from .base import PROBE, DeclaredKey, Delivery, Protocol

GROUP = "queuestorm"
FIELD = b"job"
RECLAIM_BATCH = 100


class StreamProtocol(Protocol):
    name = "stream"
    needs_ack = True
    min_redis_version = (6, 2)  # XAUTOCLAIM

    def declared_keys(self) -> list[DeclaredKey]:
        return [DeclaredKey(self.queue, "stream")]

    def probe_commands(self) -> dict[str, list[tuple]]:
        q, me = self.queue, self.consumer_id
        return {"enqueue": [("XADD", q, "*", FIELD, PROBE)], "drain": [
            ("XGROUP", "CREATE", q, GROUP, "0", "MKSTREAM"), ("XREADGROUP", "GROUP", GROUP, me, "COUNT", 1, "BLOCK", 1,
                                                              "STREAMS", q, ">"),
            ("XACK", q, GROUP, "0-1"), ("XDEL", q, "0-1"), ("XPENDING", q, GROUP, "-", "+", 1, me),
            ("XCLAIM", q, GROUP, me, 0, "0-1"), ("XAUTOCLAIM", q, GROUP, me, 0, "0-0", "COUNT", 1),
            ("XADD", q, "*", FIELD, PROBE), ("XLEN", q),
        ]}

    def enqueue_command(self, body: bytes) -> tuple:
        return ("XADD", self.queue, "*", FIELD, body)

    def _ensure_group(self, client: redis.Redis) -> None:
        try:
            client.execute_command("XGROUP", "CREATE", self.queue, GROUP, "0", "MKSTREAM")
        except redis.ResponseError as e:
            if "WRONGTYPE" in str(e):
                raise UsageError(f"--queue {self.queue!r} holds something other than a stream "
                                 "(another --protocol's queue?)") from None
            if "BUSYGROUP" not in str(e):
                raise

    def fetch(self, client: redis.Redis, block_seconds: float, count: int = 1) -> list[Delivery]:
        try:
            reply = client.xreadgroup(GROUP, self.consumer_id, {self.queue: ">"}, count=count,
                                      block=int(block_seconds * 1000))
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self._ensure_group(client)
            return []
        if not reply:
            return []
        return [Delivery(_body(fields), entry_id) for entry_id, fields in reply[0][1] if fields]

    def ack(self, client, deliveries, pipeline=None):
        ids = [d.receipt for d in deliveries]
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        pipe.execute_command("XACK", self.queue, GROUP, *ids)
        pipe.execute_command("XDEL", self.queue, *ids)
        if pipeline is None:
            pipe.execute()

    def start_consumer(self, client: redis.Redis) -> int:
        self._ensure_group(client)
        returned = 0
        while True:
            pending = client.xpending_range(self.queue, GROUP, "-", "+", RECLAIM_BATCH, self.consumer_id)
            if not pending:
                return returned
            ids = [row["message_id"] for row in pending]
            claimed = client.xclaim(self.queue, GROUP, self.consumer_id, 0, ids)
            returned += self._requeue(client, claimed, ids)

    def recover_abandoned(self, client: redis.Redis) -> int:
        idle_ms = int(self.visibility_timeout * 1000)
        cursor, returned = "0-0", 0
        while True:
            reply = client.xautoclaim(self.queue, GROUP, self.consumer_id, idle_ms, cursor, count=RECLAIM_BATCH)
            cursor, claimed = reply[0], reply[1]
            returned += self._requeue(client, claimed, [entry_id for entry_id, _ in claimed])
            if cursor in (b"0-0", "0-0"):
                return returned

    def _requeue(self, client: redis.Redis, claimed, ids) -> int:
        """Add each claimed job anew and acknowledge + delete the old entry, in one MULTI/EXEC."""
        if not ids:
            return 0
        pipe = client.pipeline(transaction=True)
        bodies = [_body(fields) for entry_id, fields in claimed if entry_id is not None and fields]
        for body in bodies:
            pipe.execute_command("XADD", self.queue, "*", FIELD, body)
        pipe.execute_command("XACK", self.queue, GROUP, *ids)
        pipe.execute_command("XDEL", self.queue, *ids)
        pipe.execute()
        return len(bodies)

    def depth(self, client: redis.Redis) -> int:
        return client.xlen(self.queue)


def _body(fields: dict) -> bytes:
    return fields.get(FIELD, b"")
