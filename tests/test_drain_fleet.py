"""The inline drain fleet's supervision: one process per consumer id, whoever restarts it, and none outlives the
Locust process that started it."""

import signal
import subprocess
import sys
import textwrap
import time

import gevent
import gevent.subprocess
import psutil
import pytest

from queuestorm import drain_fleet
from queuestorm.drain_fleet import DrainFleet

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def fleet(monkeypatch):
    monkeypatch.setattr(drain_fleet, "subprocess", gevent.subprocess)  # as under Locust: Popen yields
    f = DrainFleet("redis://127.0.0.1:1/0", "", "list", "q", processes=2, concurrency=1, work_ms=0,
                   visibility_timeout=30)
    f.command = SLEEPER
    yield f
    f.stop(timeout=5)


def sleepers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and p.cmdline()[1:3] == SLEEPER[1:]]


def test_a_restart_and_the_supervisor_racing_start_one_process_per_consumer(fleet):
    fleet.start()
    assert fleet.kill(1) == [0]
    restart = gevent.spawn(fleet.restart, [0])
    supervise = gevent.spawn(fleet.restart_crashed)  # runs while restart's Popen waits for the exec
    gevent.joinall([restart, supervise], timeout=30, raise_error=True)
    assert supervise.value == [] and fleet.alive() == 2
    assert sorted(p.pid for p in sleepers()) == sorted(p.pid for p in fleet.processes)


def test_a_start_racing_the_stop_leaves_no_process_behind(fleet):
    fleet.start()
    fleet.kill(2)
    restart = gevent.spawn(fleet.restart, [0, 1])
    gevent.sleep(0)
    fleet.stop(timeout=5)
    restart.join(timeout=30)
    assert sleepers() == [] and fleet.alive() == 0


def test_an_inline_drain_dies_with_the_locust_process_that_started_it(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from queuestorm.drain_fleet import DrainFleet
        f = DrainFleet("redis://127.0.0.1:1/0", "", "list", "q", processes=1, concurrency=1, work_ms=0,
                       visibility_timeout=30)
        f.command = {SLEEPER!r}
        f.start()
        print(f.processes[0].pid, flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        parent.send_signal(signal.SIGKILL)  # what the OOM killer does: no cleanup runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        parent.kill()
        parent.wait()
