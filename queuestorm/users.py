"""Locust User classes that enqueue jobs, importable by anyone's own locustfile."""

from locust import User, constant, task

from . import plugin  # noqa: F401  (registers queuestorm's options and events)
from .connection import LOAD_CLIENT, connect


class EnqueueUser(User):
    """Enqueues jobs as fast as allowed (or at the --rate share of this process), one connection per user.

    Each enqueue is a timed Locust request (request_type = protocol, name = enqueue); its outcome goes to the
    ledger: enqueued when the server confirmed it, maybe-enqueued when the call raised.
    """

    wait_time = constant(0)

    def on_start(self):
        self.qs = plugin.current(self.environment)
        self.client = connect(self.qs.load_url, check=False, name=LOAD_CLIENT)

    def on_stop(self):
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    @task
    def enqueue(self):
        qs = self.qs
        qs.pacer.wait()
        recorder = qs.recorder
        seq = recorder.next_seq()
        body = qs.encoder.encode(seq)
        confirmed = False
        try:
            with self.environment.events.request.measure(qs.protocol.name, "enqueue", len(body)) as meta:
                qs.protocol.enqueue(self.client, body)
            confirmed = meta["exception"] is None
        finally:
            if confirmed:
                recorder.enqueued(seq)
            else:
                recorder.maybe_enqueued(seq)
