"""The job body: JSON that any consumer can read, carrying which run, producer and sequence number it is."""

import json
import re
import time
from typing import NamedTuple


class JobRef(NamedTuple):
    run_id: str
    producer: int
    seq: int
    enqueued_at: float

    @property
    def job_id(self) -> str:
        return f"{self.producer}-{self.seq}"


class JobEncoder:
    """Builds job bodies for one producer; the fixed parts are formatted once."""

    def __init__(self, run_id: str, producer: int, payload_bytes: int):
        self._head = b'{"qs":1,"run":"%s","producer":%d,"seq":' % (run_id.encode(), producer)
        self._tail = b',"payload":"%s"}' % (b"x" * payload_bytes)

    def encode(self, seq: int, now: float | None = None) -> bytes:
        return b'%s%d,"enqueued_at":%.6f%s' % (self._head, seq, time.time() if now is None else now, self._tail)


# Exactly what JobEncoder writes, read without a JSON parse (a fifth of a drain's CPU time); anything else goes
# through json.loads.
_ENCODED = re.compile(rb'\{"qs":1,"run":"([A-Za-z0-9_.-]{1,64})","producer":(\d+),"seq":(\d+),"enqueued_at":(\d+\.\d+),'
                      rb'"payload":"x*"\}\Z')


MARKER = b'{"qs":'
_RUN_FIELD = re.compile(rb'"run"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')


def has_marker(body: bytes) -> bool:
    """Whether the body claims to be a queuestorm job (it may still fail to parse)."""
    return body.startswith(MARKER)


def run_id_of(body: bytes) -> str | None:
    """The run a marked body names, read even when the rest of it does not parse; None when unreadable."""
    found = _RUN_FIELD.search(body)
    return found.group(1).decode() if found else None


def decode(body: bytes) -> JobRef | None:
    """The job's identity, or None when the body is not a queuestorm job (a foreign job)."""
    if not body.startswith(MARKER):
        return None
    encoded = _ENCODED.match(body)
    if encoded:
        run_id, producer, seq, enqueued_at = encoded.groups()
        return JobRef(run_id.decode(), int(producer), int(seq), float(enqueued_at))
    try:
        doc = json.loads(body)
        return JobRef(str(doc["run"]), int(doc["producer"]), int(doc["seq"]), float(doc["enqueued_at"]))
    except (ValueError, KeyError, TypeError):
        return None
