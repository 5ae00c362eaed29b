"""Each library format under Locust load: enqueued by EnqueueUser, drained inline in the library's format, checked;
and Locust's load worked off by a real RQ worker."""

import json

import pytest

from helpers import locust, queuestorm

LIBRARIES = ["rq", "sidekiq", "go-workers2", "celery", "bullmq"]


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("protocol", LIBRARIES)
def test_locust_load_in_a_library_format_loses_nothing(protocol, redis_url, queue, run_id, tmp_path):
    pytest.importorskip({"celery": "celery", "bullmq": "bullmq", "rq": "rq"}.get(protocol, "json"))
    report = tmp_path / "verdict.json"
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "2s", "--rate", "100", "--protocol", protocol,
                    "--queue", queue, "--report", str(report), env={"REDIS_URL": redis_url, "QS_RUN_ID": run_id})
    assert result.returncode == 0, result.stderr[-3000:]
    doc = read(report)
    assert doc["protocol"] == protocol and doc["verdict"] == "pass"
    assert doc["enqueued"] > 50 and (doc["completed"], doc["lost"], doc["duplicated"]) == (doc["enqueued"], 0, 0)


def test_locust_load_worked_off_by_a_real_rq_worker(r, redis_url, queue, run_id, tmp_path):
    rq = pytest.importorskip("rq")
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "2s", "--rate", "100", "--protocol", "rq",
                    "--drain", "off", "--queue", queue, env={"REDIS_URL": redis_url, "QS_RUN_ID": run_id})
    assert result.returncode == 0, result.stderr[-3000:]
    rq_queue = rq.Queue(queue, connection=r)
    queued = rq_queue.count
    assert queued > 50
    assert rq.SimpleWorker([rq_queue], connection=r).work(burst=True)
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", redis_url, "--json", str(tmp_path / "c.json"))
    doc = read(tmp_path / "c.json")
    assert result.returncode == 0 and (doc["enqueued"], doc["completed"], doc["lost"], doc["duplicated"]) == (
        queued, queued, 0, 0)
