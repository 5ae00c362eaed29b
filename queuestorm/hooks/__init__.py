"""Completion hooks a user adds to a job library's real workers: each records queuestorm-marked jobs in the ledger."""

import os
import time

import redis

from ..redis.connection import connect, describe_redis_error, url_of
from ..model.errors import UsageError
from ..model.jobs import decode
from ..ledger.writer import CompletionRecorder

_recorders: dict[str, CompletionRecorder] = {}


def simulate_work() -> None:
    """What queuestorm's job does in a real worker: sleep $QS_WORK_MS milliseconds (default 0)."""
    work_ms = float(os.environ.get("QS_WORK_MS", "0") or 0)
    if work_ms:
        time.sleep(work_ms / 1000)


def record_completion(body: bytes | str, fallback_url: str | None = None, client: redis.Redis | None = None) -> bool:
    """Record one completed job in the ledger at $QS_LEDGER_URL (else `fallback_url`, else `client`); False when the
    body is not a queuestorm job."""
    if isinstance(body, str):
        body = body.encode()
    job = decode(body)
    if job is None:
        return False
    url = os.environ.get("QS_LEDGER_URL") or fallback_url
    if url is None and client is None:
        raise ValueError("queuestorm hook: set QS_LEDGER_URL to the ledger's Redis URL")
    key = url or f"client-{id(client)}"
    recorder = _recorders.get(key)
    if recorder is None:
        # connect(): one attempt per command (a retried BITFIELD that had landed would be a false duplicate), and a
        # bad URL is one line naming it; pooled, as library workers call hooks from several threads
        client = connect(url, check=False, single=False, role="ledger Redis") if url else client
        recorder = _recorders[key] = CompletionRecorder(client)
    try:
        recorder.record([(job, (time.time() - job.enqueued_at) * 1000)])
    except redis.RedisError as e:  # a worker's log gets one line naming the ledger and what it refused
        where = url or url_of(recorder.client)
        raise UsageError(f"queuestorm hook: {describe_redis_error(e, where, 'ledger Redis')}") from None
    return True
