"""Any producer, any language (docs/ledger.md): `queuestorm run open | producer | close` make a run's ledger for a
library's own client; a Node producer written from the page enqueues with bee-queue and records its enqueues;
queuestorm drains and checks, exactly, also with jobs deleted by hand."""

import json

from helpers import check_report, drain_until_empty, queuestorm
from nodejs import needs_node, run_node


def cli(*args):
    result = queuestorm("run", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def open_run(redis_url, run_id, queue):
    cli("open", "--run-id", run_id, "--ledger-url", redis_url, "--protocol", "bee-queue", "--queue", queue)
    return int(cli("producer", "--run-id", run_id, "--ledger-url", redis_url))


def test_open_refuses_an_existing_run_and_close_needs_a_known_producer(redis_url, run_id, queue):
    assert open_run(redis_url, run_id, queue) == 1
    again = queuestorm("run", "open", "--run-id", run_id, "--ledger-url", redis_url)
    assert again.returncode != 0 and "exists already" in again.stderr
    unknown = queuestorm("run", "close", "--run-id", run_id, "--ledger-url", redis_url, "--producer", "9")
    assert unknown.returncode != 0 and "no producer 9" in unknown.stderr
    closed = queuestorm("run", "producer", "--run-id", "never-opened", "--ledger-url", redis_url)
    assert closed.returncode != 0 and "not open" in closed.stderr


def test_an_unclosed_outside_producer_s_unrecorded_jobs_are_indeterminate(r, redis_url, run_id, queue, tmp_path):
    producer = open_run(redis_url, run_id, queue)
    r.hset(f"queuestorm:{{{run_id}}}:p:{producer}", "issued", 5)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert (doc["lost"], doc["maybe_enqueued"], doc["unclosed_producers"]) == (0, 5, [producer])


@needs_node
def test_a_node_producer_written_from_the_doc_is_checked_exactly(r, redis_url, run_id, queue, tmp_path):
    producer = open_run(redis_url, run_id, queue)
    result = run_node("outside_producer.js", url=redis_url, queue=queue, run=run_id, producer=producer, count=120)
    assert json.loads(result.stdout) == {"issued": 120}
    assert "1 producer(s) closed" in cli("close", "--run-id", run_id, "--ledger-url", redis_url)
    drain_until_empty(redis_url, "bee-queue", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code == 0 and (doc["enqueued"], doc["completed"], doc["lost"], doc["duplicated"]) == (120, 120, 0, 0)


@needs_node
def test_jobs_deleted_by_hand_from_an_outside_producer_are_lost_exactly(r, redis_url, run_id, queue, tmp_path):
    producer = open_run(redis_url, run_id, queue)
    run_node("outside_producer.js", url=redis_url, queue=queue, run=run_id, producer=producer, count=60)
    cli("close", "--run-id", run_id, "--ledger-url", redis_url, "--producer", str(producer), "--issued", "60")
    waiting = f"bq:{queue}:waiting"
    for job_id in r.lrange(waiting, 10, 14):
        r.lrem(waiting, 0, job_id)
    drain_until_empty(redis_url, "bee-queue", queue)
    code, doc = check_report(redis_url, run_id, tmp_path)
    assert code != 0 and (doc["completed"], doc["lost"], doc["unfinished"]) == (55, 5, 0)
