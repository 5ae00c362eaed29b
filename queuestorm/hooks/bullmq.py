"""BullMQ completion hook: wrap your processor so queuestorm-marked jobs (job.data is queuestorm's marker) are
recorded in the ledger once processed. The one line to change:

    Worker("my-queue", queuestorm.hooks.bullmq.counted(process), {"connection": url})

The ledger is $QS_LEDGER_URL when set, else `ledger_url`.
"""

import asyncio
import json

from . import record_completion, simulate_work


def counted(processor=None, ledger_url: str | None = None):
    """`processor` defaults to queuestorm's own job (sleeps $QS_WORK_MS)."""

    async def process(job, token):
        result = await processor(job, token) if processor is not None else await asyncio.to_thread(simulate_work)
        data = job.data
        body = json.dumps(data, separators=(",", ":")) if isinstance(data, dict) else data
        if isinstance(body, str):
            await asyncio.to_thread(record_completion, body, ledger_url)
        return result

    return process
