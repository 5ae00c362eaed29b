"""What the users of one Locust process share during a run: the producer's recorder, encoder, pacer and timers."""

import logging

import gevent

from ..redis.connection import LOAD_CLIENT, NETWORK_ERRORS, client_name, connect
from .durable import ReplicaWait
from ..model.jobs import JobEncoder
from ..ledger.writer import Ledger, ProducerRecorder
from ..model.options import RunConfig
from .batch import BATCH_REQUEST
from .pacer import Pacer
from .timing import timed
from ..protocols import make_protocol
from ..model.periodic import every

log = logging.getLogger("queuestorm")

FLUSH_SECONDS = 0.2
PING_SECONDS = 5.0
CLOSE_ATTEMPTS = 10


class ProducerRuntime:
    def __init__(self, config: RunConfig, environment):
        self.config = config
        self.environment = environment
        self.protocol = make_protocol(config.protocol, config.queue)
        self.pacer = Pacer(0)
        self.replica_wait = ReplicaWait.of(config)  # None without --wait-replicas
        self.recorder: ProducerRecorder | None = None
        self.encoder: JobEncoder | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self.requests = 0
        self.failures = 0

    @property
    def load_url(self) -> str:
        """Where the users connect: the latency proxy when the run has one, else the target."""
        return self.config.load_url or self.config.redis_url

    def client_name(self, base: str) -> str:
        """The CLIENT SETNAME of this run's load or drain connections, by which its faults find them."""
        return client_name(base, self.config.run_id)

    @property
    def ledger_url(self) -> str:
        return self.config.ledger_url or self.config.redis_url

    def start(self, rate_share: float) -> None:
        ledger = Ledger(connect(self.ledger_url, role="ledger Redis", single=False), self.config.run_id)
        self.recorder = ledger.register_producer()
        self.encoder = JobEncoder(self.config.run_id, self.recorder.producer_id, self.config.payload_bytes)
        self.pacer.set_rate(rate_share)
        self._greenlets = [every(FLUSH_SECONDS, self._flush), self._start_pings()]
        self.environment.events.request.add_listener(self._count_request)
        log.info("producer %s of run %s started (rate share %s/s)", self.recorder.producer_id, self.config.run_id,
                 rate_share or "unlimited")

    def stop(self) -> None:
        if self._greenlets:
            self.environment.events.request.remove_listener(self._count_request)
        gevent.killall(self._greenlets)
        self._greenlets = []
        if self.recorder is not None:
            self._close_recorder()

    def _count_request(self, name, exception=None, **_) -> None:
        if name == "enqueue" or name == BATCH_REQUEST:
            self.requests += 1
            self.failures += exception is not None

    def counts(self) -> dict:
        """This process's share of the run, as the master sums it over workers."""
        r = self.recorder
        return {"producer": r and r.producer_id, "issued": r.issued if r else 0,
                "enqueued": r.confirmed if r else 0, "maybe_enqueued": r.unconfirmed if r else 0,
                "requests": self.requests, "failures": self.failures, "dropped": self.pacer.dropped,
                "rate_share": self.pacer.rate, "closed": bool(r and r.closed)}

    def _close_recorder(self) -> None:
        for attempt in range(CLOSE_ATTEMPTS):
            try:
                self.recorder.close(dropped=self.pacer.dropped)
                return
            except NETWORK_ERRORS as e:
                error = e
                gevent.sleep(0.5)
        log.error("producer %s could not write its last ledger records (%s): its unrecorded enqueues count as "
                  "indeterminate", self.recorder.producer_id, error)

    def _flush(self) -> None:
        try:
            self.recorder.flush()
        except NETWORK_ERRORS as e:
            log.warning("ledger flush failed, will retry: %s", e)

    def _start_pings(self):
        # connects at the first ping
        client = connect(self.load_url, check=False, single=False, name=self.client_name(LOAD_CLIENT))
        request = self.environment.events.request

        def ping():
            with timed(request, self.protocol.name, "ping"):
                client.ping()
        return every(PING_SECONDS, ping, now=True)
