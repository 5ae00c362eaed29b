"""Timing one call as a Locust request event: `with timed(events.request, "list", "enqueue", n) as t: ...`.

The same event as `events.request.measure` (an Exception is recorded, classified, as the failure and does not
propagate), in a plain class: the hot path times every enqueue, and a generator-based context manager costs a few
µs more each time. Where the caller sets `round_trip` (the wire's kernel-stamped Redis round trip), that is the
response time, and the stopwatch's figure, which also counts the wait for the event loop, goes in the event's
context as `stopwatch`.
"""

import time

from .failures import classified


class timed:
    __slots__ = ("hook", "request_type", "name", "response_length", "start_time", "_started", "exception",
                 "response_time", "round_trip")

    def __init__(self, hook, request_type: str, name: str, response_length: int = 0):
        self.hook = hook
        self.request_type = request_type
        self.name = name
        self.response_length = response_length
        self.exception: Exception | None = None
        self.round_trip: float | None = None  # seconds; set by the caller when the wire measured it

    def __enter__(self) -> "timed":
        self.start_time = time.time()
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stopwatch = (time.perf_counter() - self._started) * 1000
        response_time, context = stopwatch, {}
        swallowed = exc_type is not None and issubclass(exc_type, Exception)
        if swallowed:
            self.exception = classified(exc)
        elif self.round_trip is not None and self.round_trip * 1000 <= stopwatch:
            response_time, context = self.round_trip * 1000, {"stopwatch": stopwatch}
        self.response_time = response_time
        self.hook.fire(request_type=self.request_type, name=self.name, response_time=response_time,
                       response_length=self.response_length, exception=self.exception, context=context,
                       start_time=self.start_time)
        return swallowed
