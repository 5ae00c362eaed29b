"""An open-model rate limit shared by all users of a process, like k6's constant-arrival-rate executor.

Slots are handed out at fixed times. A slot that no user could take within MAX_LATENESS of its time is dropped
and counted, so a generator that runs out of breath is never mistaken for a server that does.
"""

import time

import gevent
import gevent.event

MAX_LATENESS = 0.1


class Pacer:
    def __init__(self, rate: float):
        self.rate = rate
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.dropped = 0
        self._next = time.monotonic()
        self._changed = gevent.event.Event()

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._changed.set()  # users sleeping towards a slot of the old rate take one of the new rate
        self._changed = gevent.event.Event()

    def wait(self, jobs: int = 1) -> None:
        """Until the slot of the next `jobs` jobs (a batch takes a slot per job)."""
        while self.interval:
            now = time.monotonic()
            slot = self._next
            lag = now - slot
            if lag > MAX_LATENESS:
                skipped = int((lag - MAX_LATENESS) / self.interval)
                self.dropped += skipped
                slot += skipped * self.interval
            self._next = slot + self.interval * jobs
            if slot <= now or not self._changed.wait(slot - now):
                return
