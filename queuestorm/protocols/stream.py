"""`stream`: XADD; one consumer group (created from id 0, so nothing added before it is missed); XREADGROUP;
XACK + XDEL on completion; XAUTOCLAIM returns entries idle longer than the visibility timeout to the stream.

Acknowledged entries are deleted, so the stream holds only jobs not yet done and its length is the backlog.
queuestorm never trims (no MAXLEN): trimming deletes entries whether or not a consumer has read them, and every
entry trimmed unread is a lost job. The protocol assumes one consumer group per stream (the drain fleet)."""

from typing import NamedTuple

import redis

from ..model.errors import UsageError
from .base import PROBE, DeclaredKey, Delivery, Protocol, stream_pages

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
        return [Delivery(_job_or_entry(entry_id, fields), StreamEntry(entry_id, fields))
                for entry_id, fields in reply[0][1] if fields]

    def ack(self, client, deliveries, pipeline=None):
        ids = [d.receipt.id for d in deliveries]
        pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
        pipe.execute_command("XACK", self.queue, GROUP, *ids)
        pipe.execute_command("XDEL", self.queue, *ids)
        if pipeline is None:
            pipe.execute()

    def parked(self, delivery):
        return self.queue, pack_entry(delivery.receipt.id, delivery.receipt.fields)

    def restore(self, pipeline, queue, parked):
        """A new entry id (a stream only grows), every field as it was."""
        _entry_id, fields = unpack_entry(parked)
        pipeline.execute_command("XADD", queue, "*", *(item for pair in fields.items() for item in pair))

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
        entries = [fields for entry_id, fields in claimed if entry_id is not None and fields]
        for fields in entries:  # every field, so a foreign entry comes back whole too
            pipe.execute_command("XADD", self.queue, "*", *(item for pair in fields.items() for item in pair))
        pipe.execute_command("XACK", self.queue, GROUP, *ids)
        pipe.execute_command("XDEL", self.queue, *ids)
        pipe.execute()
        return len(entries)

    def depth(self, client: redis.Redis) -> int:
        return client.xlen(self.queue)

    def unfinished_bodies(self, client: redis.Redis):
        """Acknowledged entries are deleted: every entry left, pending or not yet read, is unfinished."""
        for entries in stream_pages(client, self.queue):
            yield [_job_or_entry(entry_id, fields) for entry_id, fields in entries if fields]


class StreamEntry(NamedTuple):
    id: bytes
    fields: dict


def _job_or_entry(entry_id: bytes, fields: dict) -> bytes:
    """The job body of an entry that holds only queuestorm's `job` field; any other entry is foreign, whole."""
    if list(fields) == [FIELD]:
        return fields[FIELD]
    return pack_entry(entry_id, fields)


def pack_entry(entry_id: bytes, fields: dict) -> bytes:
    """An entry as netstrings (`<length>:<bytes>,` each: its id, then field, value, ...): byte for byte, any bytes."""
    items = [entry_id, *(item for pair in fields.items() for item in pair)]
    return b"".join(b"%d:%s," % (len(item), item) for item in items)


def unpack_entry(packed: bytes) -> tuple[bytes, dict]:
    items, at = [], 0
    while at < len(packed):
        colon = packed.index(b":", at)
        end = colon + 1 + int(packed[at:colon])
        if packed[end:end + 1] != b",":
            raise ValueError(f"not a parked stream entry at byte {at}")
        items.append(packed[colon + 1:end])
        at = end + 1
    return items[0], dict(zip(items[1::2], items[2::2]))
