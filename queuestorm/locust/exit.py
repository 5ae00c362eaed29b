"""Leaving Locust from inside one of its event listeners, where an exception would end in a traceback: one line on
stderr, exit code 2 (the run could not be made)."""

import sys
from typing import NoReturn

from ..model.errors import EXIT_CANNOT_RUN


def cannot_run(message: str) -> NoReturn:
    print(f"queuestorm: error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CANNOT_RUN)
