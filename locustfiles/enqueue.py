"""Enqueue load on a Redis job queue, drained and loss-checked: `locust -f locustfiles/enqueue.py --headless ...`"""

from queuestorm.users import EnqueueUser  # noqa: F401
from queuestorm.generator_users import ConsumerUser, GeneratorUser  # noqa: F401
