"""A take or a send cut off half way: the job already in hand is run, the jobs possibly sent are maybe enqueued."""

from types import SimpleNamespace

import gevent
import gevent.event
import redis

from queuestorm.dyno import DynoFleet, WorkerState
from queuestorm.protocols import PROTOCOLS
from queuestorm.protocols.base import take_batch


class CutAfterFirst:
    """A client whose first command answers and whose next one (or pipeline) dies with the connection."""

    def __init__(self, first):
        self.first = first
        self.calls = 0

    def execute_command(self, *args):
        self.calls += 1
        if self.calls == 1:
            return self.first
        raise redis.ConnectionError("Connection closed by server.")

    def pipeline(self, transaction=False):
        return SimpleNamespace(execute_command=lambda *a: None,
                               execute=lambda: (_ for _ in ()).throw(redis.ConnectionError("closed")))


def test_the_job_brpop_took_is_kept_when_the_extra_take_dies():
    protocol = PROTOCOLS["list"](queue="q")
    deliveries = protocol.fetch(CutAfterFirst([b"q", b"job-1"]), 1, count=50)
    assert [d.body for d in deliveries] == [b"job-1"]


def test_the_first_take_of_a_batch_is_kept_when_the_pipeline_dies():
    client = CutAfterFirst(b"job-1")
    assert take_batch(client, ("BLMOVE", "a", "b", "RIGHT", "LEFT", 1), ("LMOVE", "a", "b", "RIGHT", "LEFT"), 10) \
        == [b"job-1"]


def test_a_dispatcher_killed_in_the_middle_of_a_send_records_the_batch_maybe_enqueued():
    recorder = SimpleNamespace(enqueued=[], maybe=[])
    runtime = SimpleNamespace(recorder=SimpleNamespace(enqueued=recorder.enqueued.append,
                                                       maybe_enqueued=recorder.maybe.append), replica_wait=None)
    fleet = DynoFleet.__new__(DynoFleet)
    fleet.runtime = runtime
    fleet.environment = SimpleNamespace(events=SimpleNamespace(request=SimpleNamespace(fire=lambda **kw: None)))
    sending = gevent.event.Event()

    def execute():
        sending.set()
        gevent.sleep(30)  # the server never answers: the kill lands here

    client = SimpleNamespace(pipeline=lambda transaction=False: SimpleNamespace(lpush=lambda *a: None,
                                                                               execute=execute))
    worker = WorkerState(0, "tasks", "flats")
    sender = gevent.spawn(fleet._send, client, [(worker, 7, b"a"), (worker, 8, b"b")])
    assert sending.wait(timeout=10)
    sender.kill(block=True, timeout=10)
    assert sender.dead
    assert recorder.maybe == [7, 8] and recorder.enqueued == [] and worker.sent == 0
