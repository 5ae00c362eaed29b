"""Defaults shared by the Locust options and the CLI, and the environment variables that set them."""

import os
import time
import uuid

DEFAULT_QUEUE = "queuestorm:jobs"
DEFAULT_PROTOCOL = "list"
DEFAULT_BLOCK_SECONDS = 1.0
DEFAULT_VISIBILITY_TIMEOUT = 30.0  # seconds a silent consumer keeps its jobs before they return to the queue


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def env(name: str, default=None):
    value = os.environ.get(name)
    return default if value in (None, "") else value
