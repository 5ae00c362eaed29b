"""A drain's published report says, per run, which jobs it holds in memory right now (issue 12, item 2)."""

import subprocess
import sys
import time

import pytest

from queuestorm import drain_reports
from queuestorm.jobs import decode

from helpers import ROOT, enqueue_jobs


def wait_for_report(r, run_id, done, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reports = drain_reports.read(r, run_id)
        if reports and done(reports[0]):
            return reports[0]
        time.sleep(0.05)
    pytest.fail(f"no report of run {run_id} came to pass within {seconds} s: {drain_reports.read(r, run_id)}")


@pytest.mark.parametrize("protocol", ["list", "stream"])
def test_a_drain_reports_the_jobs_it_holds_and_none_once_finished(protocol, r, redis_url, queue, run_id):
    enqueue_jobs(r, protocol, queue, run_id, 4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--protocol", protocol, "--queue",
         queue, "--concurrency", "3", "--work-ms", "3000", "--block", "0.3", "--until-empty",
         "--consumer-id", "holder"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        report = wait_for_report(r, run_id, lambda report: report["held"] == 3)
        assert report["completed"] == 0 and not report["final"] and report["name"] == "holder"
        waiting = r.lrange(queue, 0, -1) if protocol == "list" else [
            fields[b"job"] for _, fields in r.xrange(queue)[-1:]]
        waiting_ids = {decode(body).job_id for body in waiting}
        assert len(waiting_ids) == 1 and not waiting_ids & set(report["held_ids"])
        assert sorted(report["held_ids"]) == sorted({f"1-{seq}" for seq in range(4)} - waiting_ids)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    final = drain_reports.read(r, run_id)[0]
    assert final["final"] and (final["held"], final["held_ids"], final["completed"]) == (0, [], 4)
