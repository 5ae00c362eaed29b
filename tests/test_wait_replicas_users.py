"""--wait-replicas for seed 002's generator and seed 003's dyno dispatcher: a job counts as enqueued only once the
replica has it; where no replica answers the WAIT, every job is maybe enqueued, never a confirmed one."""

import json
import os
import shutil
import time

import pytest
import redis

from helpers import ROOT, locust, start_redis_server

WAIT = ("--wait-replicas", "1")


@pytest.fixture(scope="module")
def replicated_url():
    """A primary with one replica in sync."""
    primary, port, primary_dir = start_redis_server()
    replica, _, replica_dir = start_redis_server("--replicaof", "127.0.0.1", str(port))
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while client.info("replication").get("slave0", {}).get("state") != "online":
        assert time.monotonic() < deadline, "the replica never came online"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    for proc in (replica, primary):
        proc.terminate()
        proc.wait(10)
    for directory in (primary_dir, replica_dir):
        shutil.rmtree(directory, ignore_errors=True)


def generator_run(url, tmp_path, queue, *extra):
    report = tmp_path / "verdict.json"
    result = locust("--users", "3", "--spawn-rate", "3", "--run-time", "2s", "--queue", queue, "--drain", "users",
                    "--generator-interval-ms", "20", "--report", str(report), *extra, "GeneratorUser",
                    "ConsumerUser", env={"REDIS_URL": url})
    return result, json.loads(report.read_text())


def dyno_run(url, tmp_path, *extra):
    report = tmp_path / "verdict.json"
    result = locust("--scenario", os.path.join(ROOT, "scenarios", "dyno-concurrency.yaml"), "--run-time", "3s",
                    "--report", str(report), *extra, env={"REDIS_URL": url}, timeout=120)
    return result, json.loads(report.read_text())


def test_the_generators_pushes_are_confirmed_once_the_replica_has_them(replicated_url, tmp_path, queue):
    result, doc = generator_run(replicated_url, tmp_path, queue, *WAIT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert doc["enqueued"] > 10 and doc["maybe_enqueued"] == 0 and doc["lost"] == 0


def test_the_generators_pushes_no_replica_acknowledged_are_maybe_enqueued(redis_url, tmp_path, queue):
    result, doc = generator_run(redis_url, tmp_path, queue, *WAIT, "--wait-timeout-ms", "10")
    assert doc["enqueued"] == 0 and doc["maybe_enqueued"] > 10, result.stderr[-3000:]
    assert doc["lost"] == 0 and doc["unexpected"] == 0


def test_the_dyno_dispatchers_tasks_are_confirmed_once_the_replica_has_them(replicated_url, tmp_path):
    result, doc = dyno_run(replicated_url, tmp_path, *WAIT)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert doc["enqueued"] > 100 and doc["maybe_enqueued"] == 0 and doc["lost"] == 0


def test_the_dyno_dispatchers_tasks_no_replica_acknowledged_are_maybe_enqueued(redis_url, tmp_path):
    result, doc = dyno_run(redis_url, tmp_path, *WAIT, "--wait-timeout-ms", "10")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert doc["enqueued"] == 0 and doc["maybe_enqueued"] > 100
    assert doc["lost"] == 0 and doc["unexpected"] == 0
