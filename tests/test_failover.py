"""Sentinel targets and the failover fault on a private Sentinel topology (a primary, a replica, three sentinels):
a forced failover loses exactly the acknowledged enqueues the new primary never got, and --wait-replicas 1 none."""

import json
import shutil

import gevent
import pytest
import redis

from queuestorm.connection import connect, redact
from queuestorm.embedded_topology import EmbeddedSentinel, wait_until
from queuestorm.errors import UsageError
from queuestorm.failover import Failover
from queuestorm.faults import FaultContext
from queuestorm.jobs import decode
from queuestorm.keys import RunKeys
from queuestorm.topology import parse_sentinel_url, primary_address

from helpers import locust, queuestorm, start_redis_server


@pytest.fixture
def topology():
    t = EmbeddedSentinel()
    t.start()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ledger_url():
    proc, port, directory = start_redis_server()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


def test_sentinel_urls_name_the_sentinels_the_master_and_the_db():
    target = parse_sentinel_url("redis+sentinel://:pw@h1:26379,h2/mymaster/3?sentinel_password=spw")
    assert target.nodes == [("h1", 26379), ("h2", 26379)] and target.service == "mymaster" and target.db == 3
    assert (target.password, target.sentinel_password) == ("pw", "spw")
    assert redact("redis+sentinel://:pw@h1:1,h2:2/m?sentinel_password=spw") == \
        "redis+sentinel://:***@h1:1,h2:2/m?sentinel_password=***"
    with pytest.raises(UsageError, match=r"bad Redis URL 'redis\+sentinel://:\*\*\*@h1:1': .*MASTERNAME"):
        connect("redis+sentinel://:pw@h1:1")


@pytest.mark.parametrize("mode", ["sentinel", "kill-primary"])
def test_a_client_follows_the_primary_across_a_failover(topology, mode):
    client = connect(topology.url)  # one connection, reconnected by redis-py's own path after the failure
    client.set("k", "before")
    before = primary_address(client)
    fault = Failover(0, 0, FaultContext(admin=connect(topology.url), server=topology), mode=mode, lag=0.1)
    assert ("SENTINEL FAILOVER" if mode == "sentinel" else "SIGKILL primary") in fault.inject()
    fault.undo()  # the killed primary comes back, empty: the client must not go back to it
    assert primary_address(client) != before

    def written_on_new_primary():
        try:
            return client.set("k", "after")
        except redis.ConnectionError:  # the command that met the failover fails, as a broken connection does
            return False
    wait_until(written_on_new_primary, "the client never reached the new primary", 30, sleep=gevent.sleep)
    assert client.info("replication")["role"] == "master" and primary_address(client) != before


def _run_across_forced_failover(topology, ledger_url, tmp_path, queue, run_id, *extra):
    """A list run (no drain) against the topology; the primary is killed after a lag once 300 jobs are queued."""
    load = gevent.spawn(locust, "--users", "4", "--spawn-rate", "4", "--run-time", "7s", "--protocol", "list",
                        "--queue", queue, "--run-id", run_id, "--drain", "off", "--rate", "400", *extra,
                        env={"REDIS_URL": topology.url, "QS_LEDGER_URL": ledger_url})
    primary = connect(topology.url)
    wait_until(lambda: primary.llen(queue) > 300, "the load never started", 30, sleep=gevent.sleep)
    fault = Failover(0, 0, FaultContext(admin=connect(topology.url), server=topology), mode="kill-primary",
                     lag=0.5)
    detail = fault.inject()
    assert "SIGKILL primary" in detail, detail
    result = load.get()
    assert result.returncode == 0, result.stderr[-3000:]
    fault.undo()
    found = {(job.producer, job.seq) for job in map(decode, connect(topology.url).lrange(queue, 0, -1))}
    ledger = redis.Redis.from_url(ledger_url)
    keys = RunKeys(run_id)
    confirmed = set()
    for producer in range(1, int(ledger.get(keys.producer_counter)) + 1):
        bits = ledger.get(keys.enqueued(producer)) or b""
        confirmed |= {(producer, i) for i in range(len(bits) * 8) if bits[i >> 3] & (0x80 >> (i & 7))}
    report = tmp_path / "check.json"
    checked = queuestorm("check", "--run-id", run_id, "--ledger-url", ledger_url, "--redis-url", topology.url,
                         "--json", str(report))
    assert checked.returncode in (0, 1), checked.stderr
    return confirmed, found, json.loads(report.read_text())


def test_a_forced_failover_loses_exactly_the_acknowledged_enqueues_the_new_primary_never_got(
        topology, ledger_url, tmp_path, queue, run_id):
    confirmed, found, doc = _run_across_forced_failover(topology, ledger_url, tmp_path, queue, run_id)
    lost = confirmed - found
    assert len(lost) > 0, "the lag window lost nothing: the replica was not held back"
    assert doc["lost"] == len(lost)
    assert doc["unfinished"] == len(found) and doc["unexpected"] == 0


def test_wait_replicas_1_loses_nothing_across_the_same_failover(topology, ledger_url, tmp_path, queue, run_id):
    confirmed, found, doc = _run_across_forced_failover(topology, ledger_url, tmp_path, queue, run_id,
                                                        "--wait-replicas", "1", "--wait-timeout-ms", "200")
    assert confirmed and confirmed <= found
    assert doc["lost"] == 0 and doc["maybe_enqueued"] > 0


def test_the_failover_fault_of_a_faults_file_against_embedded_sentinel_shows_the_lost_enqueues(tmp_path):
    """The whole path: --embedded sentinel, the ledger elsewhere, the fault from the file, the drain following the
    new primary. A drain slower than the load keeps a backlog, so the lag's enqueues are still queued when the
    primary dies: lost. The lag's pops are lost too: those jobs come back from the new primary, duplicated."""
    faults = tmp_path / "faults.yaml"
    faults.write_text("faults:\n  - {kind: failover, mode: kill-primary, at: 2, lag: 0.5, down_for: 1}\n")
    report = tmp_path / "verdict.json"
    result = locust("--users", "4", "--spawn-rate", "4", "--run-time", "6s", "--protocol", "list", "--embedded",
                    "sentinel", "--ledger-url", "embedded", "--faults", str(faults), "--rate", "400",
                    "--drain-concurrency", "1", "--work-ms", "4", "--grace", "30", "--report", str(report))
    doc = json.loads(report.read_text())
    assert result.returncode == 1, result.stderr[-3000:]
    failover, = doc["faults"]
    assert "error" not in failover and "SIGKILL primary" in failover["detail"]
    assert doc["lost"] > 0 and doc["unfinished"] == 0 and doc["unexpected"] == 0
    assert any(reason.endswith("lost") for reason in doc["reasons"])


def test_a_failover_with_the_ledger_on_the_target_is_refused(tmp_path):
    faults = tmp_path / "faults.yaml"
    faults.write_text("faults:\n  - {kind: failover, at: 1}\n")
    result = locust("--run-time", "1s", "--embedded", "sentinel", "--faults", str(faults))
    assert result.returncode == 2
    assert "fault failover would lose the ledger's own records" in result.stderr


def test_the_fault_command_fails_the_users_own_sentinel_over(topology):
    before = primary_address(connect(topology.url))
    result = queuestorm("fault", "failover", "--redis-url", topology.url, timeout=60)
    assert result.returncode == 0, result.stderr
    assert primary_address(connect(topology.url)) != before
