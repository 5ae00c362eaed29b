"""Jobs that are not queuestorm's (issue 13): a drain parks them whole and leaves their own records as they were;
`queuestorm foreign --restore` puts them back, byte for byte, and the library's own worker then runs them."""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from queuestorm.protocols.stream import pack_entry, unpack_entry

from helpers import ROOT, check_report, drain_until_empty, enqueue_jobs, queuestorm

JOBS = 20
no_sidekiq = pytest.mark.skipif(shutil.which("sidekiq") is None or shutil.which("ruby") is None,
                                reason="Sidekiq is not installed (apt-get install ruby-sidekiq)")


def foreign_cli(redis_url, protocol, queue, *extra):
    result = queuestorm("foreign", "--redis-url", redis_url, "--protocol", protocol, "--queue", queue, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def drain_and_check(r, redis_url, protocol, queue, run_id, tmp_path, foreign=1):
    """queuestorm's own jobs of the run all complete; the foreign ones are parked, not run."""
    final = drain_until_empty(redis_url, protocol, queue)
    assert (final["completed"], final["foreign"], final["invalid"]) == (JOBS, foreign, 0)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["completed"], doc["lost"]) == (JOBS, 0)


def wait_until(done, seconds=60, what="the job to run"):
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("protocol", ["list", "reliable"])
def test_a_foreign_list_job_is_parked_listed_and_restored_byte_for_byte(protocol, r, redis_url, queue, run_id,
                                                                        tmp_path):
    theirs = b"\xff\x00 another application's job"
    enqueue_jobs(r, protocol, queue, run_id, JOBS)
    r.lpush(queue, theirs)
    drain_and_check(r, redis_url, protocol, queue, run_id, tmp_path)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [theirs] and r.llen(queue) == 0
    listing = foreign_cli(redis_url, protocol, queue)
    assert f"queuestorm:foreign:{queue}: 1 parked job(s)" in listing and "another application's job" in listing
    assert "1 job(s) restored" in foreign_cli(redis_url, protocol, queue, "--restore")
    assert r.lrange(queue, 0, -1) == [theirs] and not r.exists(f"queuestorm:foreign:{queue}")


def test_invalid_jobs_are_restored_with_the_invalid_flag(r, redis_url, queue, run_id):
    poison = b'{"qs":1,"run":"%s", broken' % run_id.encode()
    r.lpush(f"queuestorm:invalid:{queue}", poison)
    assert "1 parked job(s)" in foreign_cli(redis_url, "list", queue, "--invalid")
    foreign_cli(redis_url, "list", queue, "--invalid", "--restore")
    assert r.lrange(queue, 0, -1) == [poison]


def test_a_parked_stream_entry_reads_back_byte_for_byte():
    fields = {b"job": b"1:x,", b"": b"\xff\x00,:", b"k" * 300: b""}
    assert unpack_entry(pack_entry(b"1700000000000-5", fields)) == (b"1700000000000-5", fields)


def test_foreign_stream_entries_are_parked_with_every_field_and_restored(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "stream", queue, run_id, JOBS)
    entries = [{b"task": b"resize", b"size": b"\xff\x00"}, {b"job": b"not ours either", b"priority": b"high"}]
    for fields in entries:
        r.xadd(queue, fields)
    drain_and_check(r, redis_url, "stream", queue, run_id, tmp_path, foreign=2)
    parked = [unpack_entry(entry)[1] for entry in reversed(r.lrange(f"queuestorm:foreign:{queue}", 0, -1))]
    assert parked == entries and r.xlen(queue) == 0
    foreign_cli(redis_url, "stream", queue, "--restore")
    assert [fields for _, fields in r.xrange(queue)] == entries


def test_a_foreign_go_workers2_job_is_parked_and_restored(r, redis_url, queue, run_id, tmp_path):
    theirs = (b'{"queue":"%s","class":"OtherJob","args":[1,2],"jid":"f4914398ea383d1a0611e884",'
              b'"enqueued_at":1631906124.4731379,"at":1631906124.473137}' % queue.encode())
    enqueue_jobs(r, "go-workers2", queue, run_id, JOBS)
    r.lpush(f"queue:{queue}", theirs)
    drain_and_check(r, redis_url, "go-workers2", queue, run_id, tmp_path)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [theirs]
    assert not any(r.llen(key) for key in r.keys(f"queue:{queue}:*:inprogress"))
    foreign_cli(redis_url, "go-workers2", queue, "--restore")
    assert r.lrange(f"queue:{queue}", 0, -1) == [theirs]


def test_an_rq_job_of_another_application_keeps_its_status_and_data_and_runs_once_restored(r, redis_url, queue,
                                                                                          run_id, tmp_path):
    rq = pytest.importorskip("rq")
    rq_queue = rq.Queue(queue, connection=r)
    theirs = rq_queue.enqueue("operator.add", 2, 3)
    enqueue_jobs(r, "rq", queue, run_id, JOBS)
    job_key = f"rq:job:{theirs.id}"
    before = r.hgetall(job_key)
    drain_and_check(r, redis_url, "rq", queue, run_id, tmp_path)
    assert r.hgetall(job_key) == before and r.ttl(job_key) == -1
    assert theirs.get_status(refresh=True) == "queued"
    assert theirs.id not in rq_queue.finished_job_registry.get_job_ids()
    assert r.zcard(f"rq:wip:{queue}") == 0 and r.llen(f"rq:queue:{queue}:intermediate") == 0
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [theirs.id.encode()]
    foreign_cli(redis_url, "rq", queue, "--restore")
    assert rq_queue.job_ids == [theirs.id]
    assert rq.SimpleWorker([rq_queue], connection=r).work(burst=True)
    assert theirs.get_status(refresh=True) == "finished" and theirs.return_value() == 5


def test_a_bullmq_job_of_another_application_keeps_its_records_and_runs_once_restored(r, redis_url, queue, run_id,
                                                                                     tmp_path):
    bullmq = pytest.importorskip("bullmq")

    async def add():
        q = bullmq.Queue(queue, {"connection": redis_url})
        job = await q.add("resize", {"x": 21})
        await q.close()
        return job.id

    job_id = asyncio.run(add())
    enqueue_jobs(r, "bullmq", queue, run_id, JOBS)
    job_key = f"bull:{queue}:{job_id}"
    before = r.hgetall(job_key)
    drain_and_check(r, redis_url, "bullmq", queue, run_id, tmp_path)
    assert r.hgetall(job_key) == before and not r.exists(job_key + ":lock")
    assert r.llen(f"bull:{queue}:active") == 0 and r.zscore(f"bull:{queue}:completed", job_id) is None
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [job_id.encode()]
    foreign_cli(redis_url, "bullmq", queue, "--restore")
    assert r.lrange(f"bull:{queue}:wait", 0, -1) == [job_id.encode()]

    async def work():
        async def double(job, token):
            return job.data["x"] * 2

        worker = bullmq.Worker(queue, double, {"connection": redis_url})
        deadline = time.monotonic() + 30
        while r.zscore(f"bull:{queue}:completed", job_id) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await worker.close()

    asyncio.run(work())
    assert r.zscore(f"bull:{queue}:completed", job_id) is not None and r.hget(job_key, "returnvalue") == b"42"


CELERY_APP = """
import os, redis
from celery import Celery
app = Celery(broker=os.environ["BROKER"])

@app.task(name="theirs.add")
def add(x, y):
    redis.Redis.from_url(os.environ["BROKER"]).set(os.environ["RESULT_KEY"], x + y)
"""


def test_a_celery_task_of_another_application_is_parked_whole_and_runs_once_restored(r, redis_url, queue, run_id,
                                                                                    tmp_path):
    celery = pytest.importorskip("celery")
    celery.Celery(broker=redis_url).send_task("theirs.add", args=[2, 3], queue=queue)
    theirs = r.lindex(queue, 0)
    enqueue_jobs(r, "celery", queue, run_id, JOBS)
    unacked_before = set(r.hkeys("unacked"))
    drain_and_check(r, redis_url, "celery", queue, run_id, tmp_path)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [theirs] and set(r.hkeys("unacked")) == unacked_before
    foreign_cli(redis_url, "celery", queue, "--restore")
    assert r.lrange(queue, 0, -1) == [theirs]
    (tmp_path / "theirs_app.py").write_text(CELERY_APP)
    result_key = f"{queue}:result"
    with open(tmp_path / "celery.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "theirs_app", "worker", "-P", "solo", "-Q", queue,
             "--without-gossip", "--without-mingle", "--without-heartbeat"], cwd=tmp_path, stdout=log,
            stderr=subprocess.STDOUT, env=dict(os.environ, BROKER=redis_url, RESULT_KEY=result_key))
        try:
            wait_until(lambda: r.exists(result_key) or proc.poll() is not None, what="Celery to run the task")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert r.get(result_key) == b"5", (tmp_path / "celery.log").read_text()[-3000:]


SIDEKIQ_JOB = """
require "sidekiq"
class TheirJob
  include Sidekiq::Worker
  def perform(x, y)
    Sidekiq.redis { |c| c.set(ENV["RESULT_KEY"], x + y) }
  end
end
"""


@no_sidekiq
def test_a_sidekiq_job_of_another_application_is_parked_whole_and_runs_once_restored(r, redis_url, queue, run_id,
                                                                                    tmp_path):
    env = dict(os.environ, REDIS_URL=redis_url, RESULT_KEY=f"{queue}:result")
    push = 'require "sidekiq"; Sidekiq::Client.push("queue" => ARGV[0], "class" => "TheirJob", "args" => [2, 3])'
    pushed = subprocess.run(["ruby", "-e", push, queue], env=env, capture_output=True, text=True, timeout=60)
    assert pushed.returncode == 0, pushed.stderr
    theirs = r.lindex(f"queue:{queue}", 0)
    enqueue_jobs(r, "sidekiq", queue, run_id, JOBS)
    drain_and_check(r, redis_url, "sidekiq", queue, run_id, tmp_path)
    assert r.lrange(f"queuestorm:foreign:{queue}", 0, -1) == [theirs]
    foreign_cli(redis_url, "sidekiq", queue, "--restore")
    assert r.lrange(f"queue:{queue}", 0, -1) == [theirs]
    (tmp_path / "their_job.rb").write_text(SIDEKIQ_JOB)
    with open(tmp_path / "sidekiq.log", "w") as log:
        proc = subprocess.Popen(["sidekiq", "-r", str(tmp_path / "their_job.rb"), "-q", queue, "-c", "1"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: r.exists(env["RESULT_KEY"]) or proc.poll() is not None, what="Sidekiq to run the job")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert r.get(env["RESULT_KEY"]) == b"5", (tmp_path / "sidekiq.log").read_text()[-3000:]
