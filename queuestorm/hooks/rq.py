"""RQ completion hook. Jobs queuestorm enqueues name both functions below, so a real RQ worker only needs queuestorm
importable (`pip install queuestorm`). To count your own jobs, add to their enqueue call:

    on_success=rq.Callback("queuestorm.hooks.rq.on_success")   # the job's first argument is queuestorm's marker

The ledger is $QS_LEDGER_URL when set, else the worker's own Redis.
"""

import os
import time

from . import record_completion


def work(marker: str) -> None:
    """The job queuestorm enqueues: sleeps $QS_WORK_MS milliseconds (default 0)."""
    work_ms = float(os.environ.get("QS_WORK_MS", "0") or 0)
    if work_ms:
        time.sleep(work_ms / 1000)


def on_success(job, connection, result, *args, **kwargs) -> None:
    if job.args:
        record_completion(job.args[0], client=connection)
