"""Enqueue load on a Redis job queue, drained and loss-checked: `locust -f locustfiles/enqueue.py --headless ...`

Every scenario runs through this file (`--scenario scenarios/NAME.yaml` picks its user classes); without one,
EnqueueUser runs."""

from queuestorm.dyno import DynoWorkerUser  # noqa: F401
from queuestorm.plugin import default_user_classes
from queuestorm.users import EnqueueUser  # noqa: F401
from queuestorm.generator_users import ConsumerUser, GeneratorUser  # noqa: F401

default_user_classes(["EnqueueUser"])
