"""Helpers for tests: private redis-servers on free ports, and the CLIs run as a user would."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(*extra: str):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: .ci/run installs it with apt")
    directory = tempfile.mkdtemp(prefix="queuestorm-test-redis-")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            break
        except redis.AuthenticationError:
            break
        except redis.ResponseError as e:
            if "NOAUTH" in str(e):
                break
            raise
        except (redis.ConnectionError, OSError):
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the test redis-server did not start")
    return proc, port, directory


def run_cli(*args, env=None, timeout=120, cwd=ROOT) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    for name in ("REDIS_URL", "QS_LEDGER_URL", "QS_PROTOCOL", "QS_QUEUE", "QS_RUN_ID", "QS_RATE", "QS_DRAIN",
                 "QS_REPORT", "QS_EMBEDDED"):
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


def queuestorm(*args, **kw) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "-m", "queuestorm", *args, **kw)


def locust(*args, **kw) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"),
                   "--headless", "--only-summary", *args, **kw)
