"""The one way to run "wait, then do it again" in the background: a greenlet that sleeps `interval`, calls `action`,
and repeats until it is killed. An exception `action` lets out ends the loop, so each action handles its own."""

import gevent


class Periodic(gevent.Greenlet):
    def __init__(self, interval: float, action, *, now: bool = False):
        """`now`: act once before the first wait."""
        super().__init__()
        self.interval = interval
        self.action = action
        self.now = now

    def _run(self) -> None:
        if self.now:
            self.action()
        while True:
            gevent.sleep(self.interval)
            self.action()


def every(interval: float, action, *, now: bool = False) -> Periodic:
    """A started Periodic: stop it with kill(), or gevent.killall among other greenlets."""
    loop = Periodic(interval, action, now=now)
    loop.start()
    return loop
