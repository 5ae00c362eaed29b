"""Timing one call as a Locust request event: `with timed(events.request, "list", "enqueue", n) as t: ...`.

The same event as `events.request.measure` (an Exception is recorded, classified, as the failure and does not
propagate), in a plain class: the hot path times every enqueue, and a generator-based context manager costs a few
µs more each time.
"""

import time

from .failures import classified


class timed:
    __slots__ = ("hook", "request_type", "name", "response_length", "start_time", "_started", "exception",
                 "response_time")

    def __init__(self, hook, request_type: str, name: str, response_length: int = 0):
        self.hook = hook
        self.request_type = request_type
        self.name = name
        self.response_length = response_length
        self.exception: Exception | None = None

    def __enter__(self) -> "timed":
        self.start_time = time.time()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.response_time = response_time = (time.perf_counter() - self._started) * 1000
        swallowed = exc_type is not None and issubclass(exc_type, Exception)
        if swallowed:
            self.exception = classified(exc)
        self.hook.fire(request_type=self.request_type, name=self.name, response_time=response_time,
                       response_length=self.response_length, exception=self.exception, context={},
                       start_time=self.start_time)
        return swallowed
