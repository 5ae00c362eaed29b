"""One job enqueued as a timed Locust request (`enqueue`), its outcome recorded in the ledger."""

from .timing import timed


def recorded_enqueue(qs, request_hook, send, was_sent=None) -> bool:
    """Issues the producer's next job and calls `send(body, request)` under the timed request; True when confirmed.

    The ledger records it enqueued when `send` returned, not sent when it raised and `was_sent()` says nothing of
    the command left, maybe enqueued otherwise. `send` may set `request.round_trip`.
    """
    recorder = qs.recorder
    seq = recorder.next_seq()
    body = qs.encoder.encode(seq)
    confirmed = False
    try:
        with timed(request_hook, qs.protocol.name, "enqueue", len(body)) as request:
            send(body, request)
        confirmed = request.exception is None
    finally:
        if confirmed:
            recorder.enqueued(seq)
        elif was_sent is None or was_sent():
            recorder.maybe_enqueued(seq)
        else:
            recorder.not_sent(seq)
    return confirmed
