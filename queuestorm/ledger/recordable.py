"""Which fetched jobs the ledger can record: checked before recording, so one bad job never fails its whole batch.

A job cannot be recorded when its sequence number is outside BITFIELD's range, its run has no meta hash (unknown
run), or its producer id is above the run's producer counter (unknown producer). What the ledger says of each run
is cached; the counter is read again when a job names a producer above the cached one.
"""

import redis

from ..model.jobs import JobRef
from ..model.keys import valid_run_id
from .reader import registered_producer_counts

MAX_SEQ = 2**32 - 1  # BITFIELD's largest bit offset: a string of 512 MB, Redis's proto-max-bulk-len by default


class LedgerRuns:
    def __init__(self):
        self._producers: dict[str, int] = {}  # run id -> its producer counter, for runs whose meta exists

    def known(self, run_id: str) -> bool:
        """Whether the run's meta was found, without asking the ledger again."""
        return run_id in self._producers

    def exists(self, client: redis.Redis, run_id: str) -> bool:
        if run_id in self._producers:
            return True
        self._refresh(client, [run_id])
        return run_id in self._producers

    def problems(self, client: redis.Redis, jobs: list[JobRef]) -> list[str | None]:
        """Per job, why the ledger cannot record it, or None when it can; at most one round trip."""
        stale = {job.run_id for job in jobs if valid_run_id(job.run_id) and job.producer > self._producers.get(
            job.run_id, 0)}
        if stale:
            self._refresh(client, sorted(stale))
        return [self._problem(job) for job in jobs]

    def _problem(self, job: JobRef) -> str | None:
        if not valid_run_id(job.run_id):
            return "bad run id"
        if not 0 <= job.seq <= MAX_SEQ:
            return "sequence number out of range"
        if job.run_id not in self._producers:
            return "unknown run"
        if not 1 <= job.producer <= self._producers[job.run_id]:
            return "unknown producer"
        return None

    def _refresh(self, client: redis.Redis, run_ids: list[str]) -> None:
        self._producers.update(registered_producer_counts(client, run_ids))
