"""Locust User classes that enqueue jobs, importable by anyone's own locustfile."""

import gevent
import redis
from locust import User, constant, task
from locust.user.users import LOCUST_STATE_STOPPING

from . import plugin  # noqa: F401  (a locustfile importing a user gets queuestorm's options and listeners)
from ..redis.connection import LOAD_CLIENT, connect
from ..produce.batch import recorded_batch
from ..produce.enqueue import recorded_enqueue
from ..model.errors import UsageError
from ..produce.timing import timed
from ..redis.wire import DirectConnection
from .state import current
from .stop_once import StopsOnce

RECONNECT_SECONDS = 1.0
READ_BUFFER = 1024  # replies to an enqueue are a count or an entry id; 16 KB per user would be a third of its memory


class EnqueueUser(StopsOnce, User):
    """Enqueues jobs as fast as allowed (or at the --rate share of this process), one connection per user.

    Each enqueue is a timed Locust request (request_type = protocol, name = enqueue); its outcome goes to the
    ledger: enqueued when the server confirmed it, maybe-enqueued when the call raised after sending, not sent
    when it raised before any of the command left (the connection could not be made).

    With --batch N each task enqueues N jobs in one round trip instead: one timed request (name = enqueue_batch),
    each job's outcome in the ledger as above.
    """

    wait_time = constant(0)
    # Locust's task loop (pick a task, wait, switch to the hub) runs once per this many enqueues: about a sixth of
    # an enqueue's CPU time at 1 (docs/performance.md). Each enqueue is still its own timed request. A subclass
    # that paces with wait_time instead of --rate sets it to 1.
    enqueues_per_task = 10

    client = None
    batch = 1

    def on_start(self):
        self.qs = current(self.environment)
        self.batch = self.qs.config.batch
        self._connect()

    def _connect(self) -> bool:
        """A refused connection (a plan's connection limit) is a failed `connect` request, tried again later."""
        with timed(self.environment.events.request, self.qs.protocol.name, "connect") as request:
            try:
                self.client = DirectConnection(connect(self.qs.load_url, check=False,
                                                       name=self.qs.client_name(LOAD_CLIENT), read_buffer=READ_BUFFER))
            except UsageError as e:
                raise redis.ConnectionError(str(e).split(": ", 1)[-1]) from None
        return request.exception is None

    def on_stop(self):
        if self.client is not None:
            self.client.close()

    @task
    def enqueue_jobs(self):
        if self.client is None and not self._connect():
            gevent.sleep(RECONNECT_SECONDS)
            return
        if self.batch > 1:
            self.enqueue_batch(self.batch)
            return
        for _ in range(self.enqueues_per_task):
            self.enqueue()
            if self._state == LOCUST_STATE_STOPPING:
                return

    def enqueue(self):
        self.qs.pacer.wait()
        recorded_enqueue(self.qs, self.environment.events.request, self._send, self._was_sent)

    def _send(self, body: bytes, request) -> None:
        protocol = self.qs.protocol
        command = protocol.enqueue_command(body)
        if command is None:
            self.client.run(protocol.enqueue, body)
        else:
            self.client.call(*command)
            request.round_trip = self.client.round_trip
        self._wait_for_replicas(request)

    def _wait_for_replicas(self, request) -> None:
        """--wait-replicas: short of its replicas, the enqueue (every job of a batch) raises: maybe enqueued."""
        wait = getattr(self.qs, "replica_wait", None)
        if wait is not None:  # the response time is then the stopwatch's: enqueue and WAIT
            request.round_trip = None
            wait.confirm(self.client.call(*wait.command))

    def enqueue_batch(self, count: int):
        self.qs.pacer.wait(count)
        recorded_batch(self.qs, self.environment.events.request, self._send_batch, count, self._was_sent)

    def _send_batch(self, bodies: list[bytes], request) -> list:
        protocol = self.qs.protocol
        commands = [protocol.enqueue_command(body) for body in bodies]
        if commands[0] is None:
            outcomes = self.client.run(protocol.enqueue_batch, bodies)
        else:
            replies = self.client.call_many(commands)
            request.round_trip = self.client.round_trip
            outcomes = [reply if isinstance(reply, redis.ResponseError) else None for reply in replies]
        self._wait_for_replicas(request)
        return outcomes

    def _was_sent(self) -> bool:
        return self.client.sent
