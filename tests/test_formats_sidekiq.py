"""Sidekiq and go-workers2: the job JSON and keys as their sources write them, queuestorm's drain over them, and
both directions against the real Sidekiq 6.4.1 (Debian's ruby-sidekiq) where it is installed."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import redis

from queuestorm.jobs import JobEncoder, decode
from queuestorm.protocols.sidekiq import marker_of

from helpers import (ROOT, check_report, drain_until_empty, enqueue_jobs, kill_drain_holding, start_redis_server,
                     start_run)

JOBS = 300
HOOK = os.path.join(ROOT, "hooks", "sidekiq", "queuestorm.rb")
no_sidekiq = pytest.mark.skipif(shutil.which("sidekiq") is None or shutil.which("ruby") is None,
                                reason="Sidekiq is not installed (.ci/run installs Debian's ruby-sidekiq with apt)")

# Sidekiq 6.4.1 Client#push: normalize_item merges {"retry"=>true,"queue"=>"default"} with the item, adds jid
# (SecureRandom.hex(12)) and created_at; atomic_push sets enqueued_at and LPUSHes JSON onto queue:<queue>.
SIDEKIQ_JOB = ('{"retry":true,"queue":"default","class":"QueuestormJob","args":[%s],'
               '"jid":"0123456789abcdef01234567","created_at":1700000000.123,"enqueued_at":1700000000.125}')
# go-workers2's Msg, as its storage/redis.go documents a fetched message.
GO_WORKERS2_JOB = ('{"queue":"default","class":"QueuestormJob","args":[%s],"jid":"f4914398ea383d1a0611e884",'
                   '"enqueued_at":1631906124.4731379,"at":1631906124.473137}')










@pytest.mark.parametrize("protocol, fields", [
    ("sidekiq", ["retry", "queue", "class", "args", "jid", "created_at", "enqueued_at"]),
    ("go-workers2", ["queue", "class", "args", "jid", "enqueued_at", "at"]),
])
def test_enqueue_writes_the_library_job_json_on_its_keys(protocol, fields, r, queue, run_id):
    enqueue_jobs(r, protocol, queue, run_id, 1)
    assert r.smembers("queues") >= {queue.encode()}
    job = json.loads(r.lindex(f"queue:{queue}", 0))
    assert list(job) == fields
    assert job["queue"] == queue and job["class"] == "QueuestormJob" and len(job["jid"]) == 24
    assert int(job["jid"], 16) >= 0 and isinstance(job["enqueued_at"], float)
    marker = job["args"][0]
    assert (marker["run"], marker["seq"]) == (run_id, 0)


@pytest.mark.parametrize("fixture", [SIDEKIQ_JOB, GO_WORKERS2_JOB])
def test_the_marker_is_read_from_jobs_the_libraries_wrote(fixture):
    body = JobEncoder("run-1", 3, 4).encode(7, now=1700000000.0)
    as_object = marker_of((fixture % body.decode()).encode())
    as_string = marker_of((fixture % json.dumps(body.decode())).encode())
    assert decode(as_object) == decode(as_string) == decode(body)
    assert marker_of((fixture % "10").encode()) is None  # someone else's job


@pytest.mark.parametrize("protocol", ["sidekiq", "go-workers2"])
def test_drain_completes_every_job_once_over_several_queues(protocol, r, redis_url, queue, run_id, tmp_path):
    other = queue + "-low"
    enqueue_jobs(r, protocol, queue, run_id, JOBS // 2)
    enqueue_jobs(r, protocol, other, run_id + "b", JOBS // 2)
    drain_until_empty(redis_url, protocol, f"{queue},{other}")
    for run in (run_id, run_id + "b"):
        code, doc = check_report(redis_url, run, tmp_path)
        assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS // 2, 0, 0)
    assert r.llen(f"queue:{queue}") == r.llen(f"queue:{other}") == 0


@pytest.mark.parametrize("protocol", ["sidekiq", "go-workers2"])
def test_sigkill_holding_jobs(protocol, r, redis_url, queue, run_id, tmp_path):
    """Sidekiq's basic fetch loses what a hard-killed worker held; go-workers2 runs it again when the same
    ProcessID comes back."""
    enqueue_jobs(r, protocol, queue, run_id, 30)
    kill_drain_holding(redis_url, protocol, queue, lambda: r.llen(f"queue:{queue}") <= 25,
                       "--consumer-id", "victim")
    assert r.llen(f"queue:{queue}") == 25
    if protocol == "go-workers2":
        assert r.llen(f"queue:{queue}:victim:inprogress") == 5
    final = drain_until_empty(redis_url, protocol, queue, "--consumer-id", "victim")
    code, doc = check_report(redis_url, run_id, tmp_path)
    if protocol == "sidekiq":
        assert code == 1 and (doc["lost"], doc["completed"]) == (5, 25)
    else:
        assert code == 0 and (doc["lost"], doc["completed"], final["recovered"]) == (0, 30, 5)


def run_sidekiq_until(redis_url, queue, done, log_path, **env):
    """Sidekiq's own CLI on the test's server until `done()`; its log goes to a file (a full pipe would stall it)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["sidekiq", "-r", HOOK, "-q", queue, "-c", "5"], cwd=ROOT,
                                env=dict(os.environ, REDIS_URL=redis_url, **env), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while not done() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


@no_sidekiq
def test_a_real_sidekiq_runs_queuestorm_jobs(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "sidekiq", queue, run_id, JOBS)
    completions = f"queuestorm:{{{run_id}}}:completions"
    run_sidekiq_until(redis_url, queue, lambda: int(r.get(completions) or 0) >= JOBS, tmp_path / "sidekiq.log")
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
    assert r.llen(f"queue:{queue}") == 0


@no_sidekiq
def test_the_sidekiq_hook_records_in_a_separate_ledger(r, redis_url, queue, run_id, tmp_path):
    proc, port, directory = start_redis_server()
    ledger_url = f"redis://127.0.0.1:{port}/0"
    ledger = redis.Redis(port=port)
    try:
        enqueue_jobs(r, "sidekiq", queue, run_id, 50, ledger=ledger)
        completions = f"queuestorm:{{{run_id}}}:completions"
        run_sidekiq_until(redis_url, queue, lambda: int(ledger.get(completions) or 0) >= 50, tmp_path / "sidekiq.log",
                          QS_LEDGER_URL=ledger_url)
        code, doc = check_report(ledger_url, run_id, tmp_path)
        assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (50, 0, 0)
        assert not r.keys(f"queuestorm:{{{run_id}}}:*")
    finally:
        ledger.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@no_sidekiq
def test_queuestorm_drains_jobs_the_real_sidekiq_client_pushed(r, redis_url, queue, run_id, tmp_path):
    producer, encoder = start_run(r, run_id, "sidekiq", queue)
    seqs = [producer.next_seq() for _ in range(JOBS)]
    markers = "\n".join(encoder.encode(seq).decode() for seq in seqs)
    push = ('require "sidekiq"; require "json"; '
            'STDIN.each_line { |l| Sidekiq::Client.push("queue" => ARGV[0], "class" => "QueuestormJob", '
            '"args" => [JSON.parse(l)]) }')
    result = subprocess.run(["ruby", "-e", push, queue], input=markers, text=True, capture_output=True,
                            env=dict(os.environ, REDIS_URL=redis_url), timeout=120)
    assert result.returncode == 0, result.stderr
    for seq in seqs:
        producer.enqueued(seq)
    producer.close()
    assert r.llen(f"queue:{queue}") == JOBS
    drain_until_empty(redis_url, "sidekiq", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"], doc["duplicated"]) == (JOBS, 0, 0)
