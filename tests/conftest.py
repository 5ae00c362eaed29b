"""A private redis-server per test session, on a free port; no test depends on a server someone else started."""

from gevent import monkey

monkey.patch_all()  # as Locust and the drain worker do: tests run the same way whatever order they import in

import shutil  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
import redis  # noqa: E402

from helpers import start_redis_server  # noqa: E402


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
