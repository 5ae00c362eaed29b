"""A batch of jobs enqueued in one round trip as one timed Locust request (`enqueue_batch`), each job's outcome
recorded in the ledger as a single enqueue's would be."""

from .timing import timed

BATCH_REQUEST = "enqueue_batch"


class BatchRejected(Exception):
    """Some jobs of a batch got an error reply: the batch's request fails with the first one."""

    def __init__(self, errors: list[BaseException]):
        super().__init__(f"{len(errors)} of the batch's jobs: {errors[0]}")
        self.errors = errors


def recorded_batch(qs, request_hook, send, count: int, was_sent=None) -> int:
    """Issues the producer's next `count` jobs and calls `send(bodies, request)` under one timed request; it returns,
    per job, None where the server confirmed it, else the error its reply carried. Returns the jobs confirmed.

    Per job, the ledger records enqueued when its reply was OK, maybe enqueued when its reply was an error or `send`
    raised (or the greenlet was killed) after `was_sent()` says some of the batch left, not sent otherwise.
    """
    recorder = qs.recorder
    seqs = [recorder.next_seq() for _ in range(count)]
    encode = qs.encoder.encode
    bodies = [encode(seq) for seq in seqs]
    outcomes, errors = None, None
    try:
        with timed(request_hook, qs.protocol.name, BATCH_REQUEST, sum(map(len, bodies))) as request:
            outcomes = send(bodies, request)
            errors = [error for error in outcomes if error is not None]
            if errors:
                raise BatchRejected(errors)
    finally:
        if errors == [] and seqs[-1] - seqs[0] == count - 1:
            recorder.enqueued_run(seqs[0], count)
            confirmed = count
        elif outcomes is not None:
            confirmed = 0
            for seq, error in zip(seqs, outcomes):
                if error is None:
                    recorder.enqueued(seq)
                    confirmed += 1
                else:
                    recorder.maybe_enqueued(seq)
        else:
            confirmed = 0
            unsure = was_sent is None or was_sent()
            for seq in seqs:
                if unsure:
                    recorder.maybe_enqueued(seq)
                else:
                    recorder.not_sent(seq)
    return confirmed
