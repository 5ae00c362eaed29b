"""RQ completion hook. Jobs queuestorm enqueues name both functions below, so a real RQ worker only needs queuestorm
importable (`pip install queuestorm`). To count your own jobs, add to their enqueue call:

    on_success=rq.Callback("queuestorm.hooks.rq.on_success")   # the job's first argument is queuestorm's marker

The ledger is $QS_LEDGER_URL when set, else the worker's own Redis.
"""

from . import record_completion, simulate_work


def work(marker: str) -> None:
    simulate_work()


def on_success(job, connection, result, *args, **kwargs) -> None:
    if job.args:
        record_completion(job.args[0], client=connection)
