"""The promises an outside probe broke without a test noticing (issue 19's table): each test here fails when its
behaviour breaks — loss allowances at their exact boundary, the drain's record-before-ack order, redaction of
every stored field and error message, and the threshold and grace reasons."""

import json
import subprocess
import sys
import time
import uuid

import pytest
import redis

from queuestorm.check import Verdict
from queuestorm.connection import connect
from queuestorm.errors import UsageError
from queuestorm.jobs import decode
from queuestorm.keys import RunKeys
from queuestorm.ledger import CompletionRecorder
from queuestorm.protocols import make_protocol
from queuestorm.settle import Settled
from queuestorm.thresholds import latency_breaches, parse_latency_limits
from queuestorm.verdict import reasons_for

from helpers import ROOT, check_report, enqueue_jobs, locust, queuestorm, run_cli, start_redis_server

PASSWORD = "s3cret-Pw9"


def lose_every_job(r, queue, run_id, n):
    """n confirmed jobs of a `list` run, then deleted from the queue by hand: n lost."""
    enqueue_jobs(r, "list", queue, run_id, n)
    r.delete(queue)


@pytest.mark.parametrize("allowed, code", [(3, 0), (2, 1)])
def test_check_max_lost_at_its_exact_boundary(allowed, code, r, redis_url, queue, run_id, tmp_path):
    lose_every_job(r, queue, run_id, 3)
    result_code, doc = check_report(redis_url, run_id, tmp_path, "--max-lost", str(allowed))
    assert (result_code, doc["lost"], doc["max_lost"]) == (code, 3, allowed)
    assert doc["verdict"] == ("pass" if code == 0 else "fail")
    assert ("3 job(s) lost (allowed: 2)" in doc["reasons"]) == (code == 1), doc["reasons"]


def test_check_max_duplicated_at_its_exact_boundary(r, redis_url, queue, run_id, tmp_path):
    enqueue_jobs(r, "list", queue, run_id, 2)
    for body in r.lrange(queue, 0, -1):
        CompletionRecorder(r).record([(decode(body), 1.0), (decode(body), 1.0)])
    r.delete(queue)
    assert check_report(redis_url, run_id, tmp_path, "--max-duplicated", "2")[0] == 0
    code, doc = check_report(redis_url, run_id, tmp_path, "--max-duplicated", "1")
    assert code == 1 and "2 job(s) duplicated (allowed: 1)" in doc["reasons"]


def run_locust_losing(redis_url, r, queue, lose: int, max_lost: int, report):
    """A Locust run with --drain external; this test is the external drain, and drops the first `lose` jobs it
    takes (the oldest: confirmed) without recording them. Returns the finished run."""
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", f"{ROOT}/locustfiles/enqueue.py", "--headless", "--only-summary",
         "--users", "2", "--spawn-rate", "2", "--run-time", "2s", "--rate", "50", "--drain", "external",
         "--grace", "30", "--queue", queue, "--run-id", run_id, "--max-lost", str(max_lost), "--report", str(report)],
        env={**_clean_env(), "REDIS_URL": redis_url}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    recorder = CompletionRecorder(r)
    dropped = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the Locust run did not end"
        popped = r.brpop(queue, timeout=0.2)
        if popped is None:
            continue
        if dropped < lose:
            dropped += 1
            continue
        recorder.record([(decode(popped[1]), 1.0)])
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


def _clean_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("QS_") and k != "REDIS_URL"}


@pytest.mark.parametrize("max_lost, code", [(2, 0), (1, 1)])
def test_locust_run_max_lost_at_its_exact_boundary(max_lost, code, redis_url, r, queue, tmp_path):
    report = tmp_path / "verdict.json"
    returncode, out, err = run_locust_losing(redis_url, r, queue, 2, max_lost, report)
    doc = json.loads(report.read_text())
    assert (returncode, doc["lost"], doc["unfinished"], doc["unexpected"]) == (code, 2, 0, 0), err[-3000:]
    assert doc["enqueued"] > 20
    assert ("2 job(s) lost (allowed: 1)" in doc["reasons"]) == (code == 1), doc["reasons"]


# The drain's own process, its protocol's ack wrapped: the real ack runs, then the process dies at once. A drain
# that recorded first loses nothing; one that acknowledged first dies with the job gone and never recorded.
DIES_AFTER_ACK = """
import os, sys
from queuestorm.protocols.reliable import ReliableProtocol
real_ack = ReliableProtocol.ack
def ack_then_die(self, client, deliveries, pipeline=None):
    real_ack(self, client, deliveries, pipeline)
    if pipeline is None:
        os._exit(137)
    execute = pipeline.execute
    def execute_then_die(*args, **kwargs):
        execute(*args, **kwargs)
        os._exit(137)
    pipeline.execute = execute_then_die
ReliableProtocol.ack = ack_then_die
from queuestorm.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("ledger_db", [0, 1], ids=["ledger-on-the-target", "ledger-elsewhere"])
def test_a_drain_dying_right_after_its_ack_has_recorded_the_job(ledger_db, r, redis_port, queue, run_id, tmp_path):
    target_url = f"redis://127.0.0.1:{redis_port}/0"
    ledger_url = f"redis://127.0.0.1:{redis_port}/{ledger_db}"
    ledger = redis.Redis(port=redis_port, db=ledger_db)
    enqueue_jobs(r, "reliable", queue, run_id, 1, ledger=ledger)
    result = run_cli(sys.executable, "-c", DIES_AFTER_ACK, "drain", "--redis-url", target_url, "--ledger-url",
                     ledger_url, "--protocol", "reliable", "--queue", queue, "--until-empty", "--block", "0.3",
                     "--concurrency", "1", timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr
    code, doc = check_report(ledger_url, run_id, tmp_path, "--redis-url", target_url)
    assert doc["lost"] == 0, doc
    assert doc["completed"] + doc["unfinished"] == 1, doc


def monitored(port: int, action) -> list[dict]:
    """The commands the server ran while `action()` ran, as MONITOR saw them."""
    client = redis.Redis(port=port, socket_timeout=2)
    commands = []
    with client.monitor() as monitor:
        action()
        client.set(f"monitor-end-{uuid.uuid4().hex}", 1)
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "MONITOR never showed the end marker"
            command = monitor.next_command()
            commands.append(command)
            if command["command"].startswith("SET monitor-end-"):
                break
    client.close()
    return commands


@pytest.mark.parametrize("ledger_db", [0, 1], ids=["ledger-on-the-target", "ledger-elsewhere"])
def test_the_drain_records_a_completion_before_it_acknowledges(ledger_db, r, redis_port, queue, run_id):
    ledger = redis.Redis(port=redis_port, db=ledger_db)
    enqueue_jobs(r, "reliable", queue, run_id, 3, ledger=ledger)
    completed_key = RunKeys(run_id).completed(1)
    processing = make_protocol("reliable", queue, "ordered").processing.rsplit(":", 1)[0] + ":"

    def drain():
        result = queuestorm("drain", "--redis-url", f"redis://127.0.0.1:{redis_port}/0", "--ledger-url",
                            f"redis://127.0.0.1:{redis_port}/{ledger_db}", "--protocol", "reliable", "--queue", queue,
                            "--until-empty", "--block", "0.3", "--concurrency", "1", "--batch", "1",
                            "--consumer-id", "ordered", timeout=60)
        assert result.returncode == 0, result.stderr

    commands = [c for c in monitored(redis_port, drain) if c["db"] == ledger_db or c["db"] == 0]
    texts = [c["command"] for c in commands]
    records = [i for i, t in enumerate(texts) if t.startswith(f"BITFIELD {completed_key} ")]
    acks = [i for i, t in enumerate(texts) if t.startswith(f"LREM {processing}")]
    assert len(records) == 3 and len(acks) == 3, texts
    for record, ack in zip(records, acks):
        assert record < ack
        if ledger_db == 0:  # one MULTI/EXEC holds both
            opened = max(i for i in range(record) if texts[i] == "MULTI")
            closed = min(i for i in range(ack, len(texts)) if texts[i] == "EXEC")
            assert opened < record < ack < closed, texts[opened:closed + 1]
            assert commands[opened]["client_address"] == commands[ack]["client_address"]


@pytest.fixture
def password_server():
    proc, port, directory = start_redis_server("--requirepass", PASSWORD)
    yield port
    proc.terminate()
    proc.wait(10)


def test_the_ledger_meta_never_stores_the_target_password(password_server, queue, tmp_path):
    port = password_server
    run_id = f"t-{uuid.uuid4().hex[:10]}"
    result = locust("--users", "1", "--spawn-rate", "1", "--run-time", "1s", "--queue", queue, "--run-id", run_id,
                    "--report", str(tmp_path / "v.json"),
                    env={"REDIS_URL": f"redis://default:{PASSWORD}@127.0.0.1:{port}/0"})
    assert result.returncode == 0, result.stderr[-3000:]
    client = redis.Redis(port=port, password=PASSWORD)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(RunKeys(run_id).meta).items()}
    assert meta["target"] == f"redis://default:***@127.0.0.1:{port}/0"
    stored = [client.dump(key) or b"" for key in client.scan_iter(match=f"{RunKeys(run_id).base}*")]
    assert stored and not any(PASSWORD.encode() in value for value in stored)
    assert PASSWORD not in result.stdout + result.stderr


BAD_URLS_WITH_SECRETS = [  # each is refused by the URL parser, its secret in a different place
    f"redis://user:{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://{PASSWORD}@127.0.0.1:notaport/0",
    f"redis://127.0.0.1:notaport/0?password={PASSWORD}",
    f"redis://127.0.0.1:notaport/0?username={PASSWORD}&password={PASSWORD}",
    f"redis://u:{PASSWORD.replace('-', '%2D')}@127.0.0.1:notaport/0",
    f"redis://127.0.0.1:1/0?db=notadb&password={PASSWORD}",
    f"redis://127.0.0.1:1/0?password={PASSWORD}&socket_timeout=never",
    f"unix://:{PASSWORD}@/tmp/no.sock?db=notadb",
]


@pytest.mark.parametrize("url", BAD_URLS_WITH_SECRETS)
def test_a_bad_url_s_error_never_shows_its_credentials(url):
    with pytest.raises(UsageError) as raised:
        connect(url, role="ledger Redis", check=False)
    message = str(raised.value)
    assert message.startswith("bad ledger Redis URL ") and "***" in message, message
    assert PASSWORD not in message and PASSWORD.replace("-", "%2D") not in message, message


def test_a_bad_url_s_error_from_the_cli_never_shows_its_credentials(run_id):
    result = queuestorm("check", "--run-id", run_id, "--ledger-url", BAD_URLS_WITH_SECRETS[0])
    assert result.returncode == 2 and "bad ledger Redis URL" in result.stderr, result.stderr
    assert PASSWORD not in result.stdout + result.stderr


class FakeEntry:
    def __init__(self, ms: float):
        self.num_requests = 1
        self.max_response_time = ms

    def get_response_time_percentile(self, _):
        return self.max_response_time


class FakeStats:
    def __init__(self, **events):
        self.entries = {(name, "redis"): FakeEntry(ms) for name, ms in events.items()}


def test_a_latency_limit_with_no_events_measured_is_a_breach():
    limits = parse_latency_limits("enqueue:p95=50")
    assert latency_breaches(FakeStats(), limits) == [
        "latency enqueue:p95 <= 50 ms: no 'enqueue' events were measured"]
    assert latency_breaches(FakeStats(other=1), limits) == [
        "latency enqueue:p95 <= 50 ms: no 'enqueue' events were measured"]


@pytest.mark.parametrize("ms, breached", [(50, False), (50.5, True)])
def test_a_latency_limit_at_its_exact_boundary(ms, breached):
    reasons = latency_breaches(FakeStats(enqueue=ms), parse_latency_limits("enqueue:max=50"))
    assert reasons == (["latency enqueue:max 50.5 ms > 50 ms"] if breached else [])


def verdict_with(**counts) -> Verdict:
    return Verdict(run_id="r", protocol="list", enqueued=10, **counts)


def test_unfinished_jobs_after_an_unsettled_drain_name_the_grace():
    v = verdict_with(unfinished=3)
    not_settled = Settled(settled=False, depth=3, unclosed_producers=[], waited_s=5.0)
    assert reasons_for(v, settled=not_settled, grace=5) == [
        "3 job(s) unfinished: the drain did not finish within --grace 5s"]
    settled = Settled(settled=True, depth=3, unclosed_producers=[], waited_s=1.0)
    assert reasons_for(v, settled=settled, grace=5) == ["3 job(s) unfinished (still queued or held by a consumer)"]
    assert reasons_for(v) == ["3 job(s) unfinished (still queued or held by a consumer)"]


@pytest.mark.parametrize("lost, max_lost, reasons", [
    (0, 0, []), (1, 0, ["1 job(s) lost"]), (2, 2, []), (3, 2, ["3 job(s) lost (allowed: 2)"]),
])
def test_lost_reason_at_its_exact_boundary(lost, max_lost, reasons):
    assert reasons_for(verdict_with(lost=lost, max_lost=max_lost)) == reasons


def test_every_reason_is_kept_in_order_with_the_breaches_last():
    v = Verdict(run_id="r", protocol="list", lost=1, unfinished=1, unexpected=1, duplicated=2, max_duplicated=1,
                invalid=1)
    assert reasons_for(v, breaches=["latency x"]) == [
        "1 job(s) lost", "1 job(s) unfinished (still queued or held by a consumer)",
        "1 job(s) completed that were never enqueued", "2 job(s) duplicated (allowed: 1)",
        "1 job(s) of this run could not be recorded: parked whole as invalid (queuestorm foreign --invalid lists them)",
        "no job was enqueued: nothing was proven", "latency x"]
    assert reasons_for(Verdict(run_id="r", protocol="list", maybe_enqueued=1)) == []


def test_judge_passes_the_run_s_facts_to_the_reasons():
    from queuestorm.verdict import judge

    not_settled = Settled(settled=False, depth=1, unclosed_producers=[], waited_s=2.0)
    v = judge(verdict_with(unfinished=1), settled=not_settled, grace=2, breaches=["error ratio 0.5 > 0"])
    assert v.reasons == ["1 job(s) unfinished: the drain did not finish within --grace 2s", "error ratio 0.5 > 0"]
    assert v.verdict == "fail" and not v.passed
    assert judge(verdict_with()).verdict == "pass" and judge(verdict_with()).reasons == []


def test_as_many_maybe_as_confirmed_enqueues_still_proves_something():
    assert reasons_for(Verdict(run_id="r", protocol="list", enqueued=2, maybe_enqueued=2)) == []
