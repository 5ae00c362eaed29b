"""Celery both ways against the real celery package: queuestorm enqueues protocol-2 messages a real solo worker runs
(its task_success hook records completions); Celery's send_task produces, `queuestorm drain --protocol celery`
works; and kombu's visibility-timeout redelivery of what a killed drain held."""

import signal
import subprocess
import sys
import time

import pytest


from helpers import ROOT, check_report, drain_until_empty, enqueue_jobs, kill_drain_holding, start_run

celery = pytest.importorskip("celery")

JOBS = 300










def test_a_real_celery_worker_runs_queuestorm_tasks(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "celery", queue, run_id, JOBS)
    assert r.smembers(f"_kombu.binding.{queue}") == {f"{queue}\x06\x16\x06\x16{queue}".encode()}
    completions = f"queuestorm:{{{run_id}}}:completions"
    with open(tmp_path / "celery.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-b", redis_url, "worker", "-P", "solo", "-Q", queue,
             "--include", "queuestorm.hooks.celery", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while int(r.get(completions) or 0) < JOBS and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.llen(queue) == 0 and r.hlen("unacked") == 0


def test_queuestorm_drains_tasks_celery_sent(r, redis_url, queue, run_id, tmp_path):
    app = celery.Celery(broker=redis_url)
    producer, encoder = start_run(r, run_id, "celery", queue)
    for _ in range(JOBS):
        seq = producer.next_seq()
        app.send_task("queuestorm.work", args=[encoder.encode(seq).decode()], queue=queue)
        producer.enqueued(seq)
    producer.close()
    drain_until_empty(redis_url, "celery", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.llen(queue) == 0 and r.hlen("unacked") == 0 and r.zcard("unacked_index") == 0


def test_a_killed_drain_s_tasks_come_back_after_the_visibility_timeout(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "celery", queue, run_id, 30)
    kill_drain_holding(redis_url, "celery", queue, lambda: r.hlen("unacked") >= 5)
    assert r.hlen("unacked") == 5
    final = drain_until_empty(redis_url, "celery", queue, "--visibility-timeout", "1")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], final["recovered"]) == (30, 0, 5)
    assert r.hlen("unacked") == 0


def test_drain_consumes_every_queue_of_a_worker_s_queue_list(r, redis_url, queue, run_id, tmp_path):
    other = queue + "-low"
    enqueue_jobs(r, "celery", queue, run_id, JOBS // 2)
    enqueue_jobs(r, "celery", other, run_id + "b", JOBS // 2)
    drain_until_empty(redis_url, "celery", f"{queue},{other}")
    for run in (run_id, run_id + "b"):
        code, doc = check_report(redis_url, run, tmp_path)
        assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS // 2, 0, 0)
    assert r.llen(queue) == r.llen(other) == 0 and r.hlen("unacked") == 0
