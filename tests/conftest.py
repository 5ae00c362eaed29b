"""A private redis-server per test session, on a free port; no test depends on a server someone else started."""

import functools
import os

from gevent import monkey

# Patched as Locust and the drain worker patch themselves, so tests run the same way whatever order they import in;
# except threads under pytest-xdist: a worker talks to the controller from a real thread, whose locks and queues
# must stay real (patched, the worker dies with gevent's LoopExit). Every later patch_all of this process (Locust's,
# queuestorm.cli's) leaves them real too; the processes the tests start patch everything as usual.
if "PYTEST_XDIST_WORKER" in os.environ:
    monkey.patch_all = functools.partial(monkey.patch_all, thread=False)
monkey.patch_all()

import shutil  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
import redis  # noqa: E402

from helpers import start_redis_server  # noqa: E402


# The files whose tests run longest (tens of seconds each: capacity searches, failovers, faults, real hosts), handed
# out first so that no worker picks one up at the end while the others sit idle.
LONGEST_FIRST = ("test_capacity_run.py", "test_failover.py", "test_faults.py", "test_partitions.py",
                 "test_real_hosts.py", "test_lifecycle.py", "test_distributed.py", "test_webui_distributed.py",
                 "test_wait_replicas_users.py", "test_formats_locust.py", "test_generator_consumer.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def redis_port():
    proc, port, directory = start_redis_server()
    yield port
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_port) -> str:
    return f"redis://127.0.0.1:{redis_port}/0"


@pytest.fixture
def r(redis_port) -> redis.Redis:
    client = redis.Redis(port=redis_port)
    yield client
    client.close()


@pytest.fixture
def queue() -> str:
    return f"test-queue-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"
