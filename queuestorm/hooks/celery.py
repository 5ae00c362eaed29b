"""Celery completion hook: the `queuestorm.work` task and a task_success handler that records queuestorm-marked
tasks in the ledger. The one line to add: `import queuestorm.hooks.celery` in your Celery app module, or start the
worker with `--include queuestorm.hooks.celery`. The ledger is $QS_LEDGER_URL when set, else the broker.
$QS_WORK_MS makes queuestorm.work sleep.
"""

from celery import shared_task, signals

from . import record_completion, simulate_work

TASK = "queuestorm.work"


@shared_task(name=TASK)
def work(marker: str) -> None:
    simulate_work()


@signals.task_success.connect(weak=False)
def on_success(sender=None, **_kwargs) -> None:
    args = getattr(sender.request, "args", None) or []
    if args and isinstance(args[0], str):
        record_completion(args[0], fallback_url=sender.app.conf.broker_url)
