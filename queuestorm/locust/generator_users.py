"""Seed 002's generator and consumers as Locust users: one generator at a time (a Redis lock) pushes a job every
--generator-interval-ms; consumers BRPOP, work, record the completion, push invalid jobs to the error queue, and
when the generator is gone exactly one of them (the one whose SET NX wins) becomes the generator."""

import itertools
import logging
import os
import socket
import time

import gevent
from locust import User, events, task
from locust.runners import WorkerRunner
from locust.user.users import LOCUST_STATE_STOPPING

from .stop_once import StopsOnce
from . import plugin  # noqa: F401  (a locustfile importing these users gets queuestorm's options and listeners)
from ..model.environment import state_of
from .exit import cannot_run
from .state import current
from ..redis.connection import LOAD_CLIENT, connect
from ..produce.enqueue import recorded_enqueue
from ..produce.failures import classified
from ..produce.generator_lock import GeneratorLock
from ..produce.generator_options import GeneratorSettings
from ..model.jobs import decode
from ..ledger.writer import CompletionRecorder
from ..produce.timing import timed

log = logging.getLogger("queuestorm")

FETCH_BLOCK_SECONDS = 1.0
STOP_DRAIN_BLOCK_SECONDS = 0.5
PROTOCOLS = ("list",)

_names = itertools.count(1)
_generating: set = set()  # this process's generators now pushing: consumers stopping wait for them to finish


def _name(user: User) -> str:
    return f"{type(user).__name__}-{next(_names)}@{socket.gethostname()}:{os.getpid()}"


class Generation:
    """One user's turn as the generator: paced pushes, each timed and recorded in the ledger, and lock renewals."""

    def __init__(self, user: User, lock: GeneratorLock, settings: GeneratorSettings):
        self.user = user
        self.lock = lock
        self.interval = settings.interval_s
        self.renew_every = lock.ttl_ms / 3000
        self.started = time.monotonic()
        self.next_push = self.started
        self.next_renew = self.started + self.renew_every
        self.pushed = 0
        _generating.add(self)

    def step(self) -> bool:
        """Push when due, renew when due; False when the lock was lost (it expired and may be someone else's)."""
        now = time.monotonic()
        if now >= self.next_renew:
            if not self.lock.renew():
                self.end()
                return False
            self.next_renew = now + self.renew_every
        if now >= self.next_push:
            self.user.shielded(self._push)
            self.next_push = max(self.next_push + self.interval, now - self.interval)
        return True

    def wait_seconds(self) -> float:
        return max(0.0, min(self.next_push, self.next_renew) - time.monotonic())

    def end(self, release: bool = False) -> None:
        _generating.discard(self)
        if release:
            self.lock.release()

    def _push(self) -> None:
        user = self.user
        if recorded_enqueue(user.qs, user.environment.events.request, self._send):
            self.pushed += 1

    def _send(self, body: bytes, _request) -> None:
        """--wait-replicas: the push counts as enqueued only once the replicas have it (WAIT on the same connection)."""
        user = self.user
        user.qs.protocol.enqueue(user.client, body)
        if user.qs.replica_wait is not None:
            user.qs.replica_wait.after(user.client)


class _QueueUser(StopsOnce, User):
    abstract = True

    def on_start(self):
        self.qs = current(self.environment)
        self.settings = GeneratorSettings.from_options(self.environment.parsed_options, self.qs.config.queue)
        self.client = connect(self.qs.load_url, check=False, name=self.qs.client_name(LOAD_CLIENT),
                              block_seconds=FETCH_BLOCK_SECONDS)
        self.name = _name(self)
        self.lock = GeneratorLock(self.client, self.qs.config.queue, self.name, self.settings.check_s)
        self.generation: Generation | None = None
        self._in_flight: gevent.Greenlet | None = None

    def shielded(self, operation, *args):
        """Run one request and its bookkeeping in a greenlet of its own. Locust kills a user it finds waiting, and
        the kill can land after the user has resumed and sent its next request: a job pushed yet recorded as
        maybe-enqueued, or popped and never recorded. The kill now only stops the user; on_stop waits for this."""
        self._in_flight = gevent.spawn(operation, *args)
        return self._in_flight.get()

    def _become_generator(self, how: str) -> bool:
        """Try the lock (SET NX PX): of all the users trying at once, exactly one wins."""
        acquired = False
        with timed(self.environment.events.request, "generator", "acquire"):
            acquired = self.lock.acquire()
        if acquired:
            self.generation = Generation(self, self.lock, self.settings)
            log.info("%s %s as the generator of %r", self.name, how, self.qs.config.queue)
        return acquired

    def _stop_generating(self, why: str, release: bool) -> None:
        generation, self.generation = self.generation, None
        generation.end(release=release)
        log.info("%s stopped generating (%s): %d job(s) pushed", self.name, why, generation.pushed)

    def _generate(self) -> None:
        if not self.generation.step():
            self._stop_generating("lost the generator lock", release=False)

    def on_stop(self):
        if getattr(self, "_in_flight", None) is not None:
            self._in_flight.join()
        if getattr(self, "generation", None) is not None:
            self._stop_generating("the run stopped", release=True)
        if hasattr(self, "client"):
            self._finish()
            self.client.close()

    def _finish(self) -> None:
        """What a user does after it stopped generating and before its connection closes."""


class GeneratorUser(_QueueUser):
    """The seed's generator mode. Spawn --generators of them: the first to take the lock generates, the others
    wait as standby and try the lock every --generator-check-seconds."""

    fixed_count = 1

    def on_start(self):
        super().on_start()
        self.crashed = False

    def wait_time(self):
        if self.generation is not None:
            return self.generation.wait_seconds()
        return self.settings.check_s

    @task
    def generate(self):
        if self.crashed:
            return
        if self.generation is None:
            if not self._become_generator("started"):
                return
        stop_after = self.settings.stop_after_s
        if stop_after and time.monotonic() - self.generation.started >= stop_after:
            self.crashed = True
            self._stop_generating(f"--generator-stop-after {stop_after:g}s; the lock is left to expire", False)
            return
        self._generate()


class ConsumerUser(_QueueUser):
    """The seed's consumer mode: BRPOP, work, record, error queue; takes over as generator when the generator's
    lock has expired. In --drain users runs the consumers are the drain: when the run stops they finish the queue."""

    def on_start(self):
        super().on_start()
        self.recorder = CompletionRecorder(connect(self.qs.ledger_url, check=False))
        self.next_check = time.monotonic() + self.settings.check_s

    def wait_time(self):
        return 0 if self.generation is None else self.generation.wait_seconds()

    @task
    def work(self):
        if self.generation is not None:
            self._generate()
            return
        self.shielded(self._consume, FETCH_BLOCK_SECONDS)
        if time.monotonic() >= self.next_check and self._state != LOCUST_STATE_STOPPING:
            self.next_check = time.monotonic() + self.settings.check_s
            self._check_generator()

    def _check_generator(self) -> None:
        holder = ""
        with timed(self.environment.events.request, "generator", "check"):
            holder = self.lock.holder()
        if holder is None:
            self._become_generator("took over")

    def _consume(self, block_seconds: float) -> bool:
        """One BRPOP; a job is worked on, recorded, and sent to the error queue when invalid. False when none came."""
        qs = self.qs
        started = time.perf_counter()
        exception = None
        deliveries = []
        try:
            deliveries = qs.protocol.fetch(self.client, block_seconds, 1)
        except Exception as e:  # the failure is the statistic: a refused or reset fetch, shown as it happened
            exception = e
        if exception is None and not deliveries:
            return False  # an empty, timed-out BRPOP is waiting, not a request worth a statistic
        body = deliveries[0].body if deliveries else b""
        self.environment.events.request.fire(
            request_type=qs.protocol.name, name="fetch", response_time=(time.perf_counter() - started) * 1000,
            response_length=len(body), exception=classified(exception), context={})
        if exception is not None:
            time.sleep(0.1)
            return False
        time.sleep(self.settings.work_seconds())
        job = decode(body)
        if job is not None:
            self.recorder.record([(job, (time.time() - job.enqueued_at) * 1000)])
        if job is None or self.settings.is_invalid(job.seq):
            with timed(self.environment.events.request, qs.protocol.name, "error", len(body)):
                self.client.lpush(self.settings.error_queue, body)
        return True

    def _finish(self) -> None:
        """The consumers are the drain: consume until the queue stays empty and this process's generators stopped
        (those of other processes stop at the same moment; STOP_DRAIN_BLOCK_SECONDS of silence covers them)."""
        while self._consume(STOP_DRAIN_BLOCK_SECONDS) or _generating:
            pass


@events.init.add_listener
def _on_init(environment, runner=None, **_):
    ours = [cls for cls in environment.user_classes if issubclass(cls, _QueueUser)]
    options = environment.parsed_options
    if not isinstance(runner, WorkerRunner) and ours and options is not None and options.protocol not in PROTOCOLS:
        state = state_of(environment)
        if state is not None and state.session is not None:
            state.session.shutdown()
        cannot_run(f"--protocol {options.protocol!r}: {ours[0].__name__} speaks only "
                     f"{', '.join(PROTOCOLS)} (LPUSH/BRPOP, seed 002)")
    if options is None:
        return
    GeneratorUser.fixed_count = int(options.generators)
    if ConsumerUser in environment.user_classes and not options.stop_timeout:
        # the consumers are the drain: when the run stops they finish the queue, for up to --grace seconds
        environment.stop_timeout = max(environment.stop_timeout, float(options.grace))


__all__ = ["GeneratorUser", "ConsumerUser"]
