"""Partition faults in queuestorm's proxy (blackhole, reset-peer, bandwidth, slicer): each toxic's effect on a
client through a real proxy process, and reliable across a partition of the drains' connections losing nothing."""

import json
import time

import pytest
import redis

from queuestorm.errors import UsageError
from queuestorm.faults import parse_faults
from queuestorm.proxy import ProxyProcess

from helpers import locust, queuestorm


@pytest.fixture
def proxy(redis_url):
    p = ProxyProcess(redis_url)
    yield p
    p.stop()


def client_of(proxy, timeout=2.0) -> redis.Redis:
    return redis.Redis.from_url(proxy.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry_on_timeout=False, retry=None)


def until(condition, timeout=5.0):
    """The proxy applies a control line asynchronously: wait for its effect, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_blackhole_accepts_connections_and_delivers_nothing_until_lifted(proxy):
    proxy.set_toxic("both", "blackhole")

    def hangs():
        try:
            client_of(proxy, 0.3).ping()
            return False
        except redis.TimeoutError:
            return True
    assert until(hangs)
    proxy.set_toxic("both", "none")
    assert until(lambda: client_of(proxy).ping())


def test_reset_peer_resets_a_connection_once_it_carried_the_bytes(proxy):
    client = client_of(proxy)
    client.ping()
    proxy.set_toxic("upstream", "reset-peer", 0, 0)

    def reset():
        try:
            client.ping()
            return False
        except redis.ConnectionError as e:
            return "reset" in str(e).lower() or "closed" in str(e).lower()
    assert until(reset)


def test_bandwidth_and_slicer_slow_a_reply_and_leave_it_whole(proxy, r, queue):
    r.set(queue, b"x" * 50_000)
    client = client_of(proxy, 10)
    proxy.set_toxic("downstream", "bandwidth", 100)  # KB/s: 50 KB take about half a second
    assert until(lambda: _timed_get(client, queue)[0] > 0.35)
    proxy.set_toxic("downstream", "slicer", 100, 1)  # 500 pieces, 1 ms apart
    took, value = _timed_get(client, queue)
    assert took > 0.3 and value == b"x" * 50_000
    proxy.set_toxic("both", "none")
    assert until(lambda: _timed_get(client, queue)[0] < 0.1)


def _timed_get(client, key):
    started = time.monotonic()
    value = client.get(key)
    return time.monotonic() - started, value


def test_partition_faults_are_validated():
    spec, = parse_faults([{"kind": "blackhole", "duration": 2, "target": "drain"}], "f.yaml")
    assert spec.params == {"target": "drain"}
    with pytest.raises(UsageError, match=r"faults\[0\].duration: blackhole needs a duration above 0"):
        parse_faults([{"kind": "blackhole"}], "f.yaml")
    with pytest.raises(UsageError, match=r"faults\[0\].target: 'all' is not one of load, drain, both"):
        parse_faults([{"kind": "slicer", "duration": 1, "target": "all"}], "f.yaml")
    with pytest.raises(UsageError, match=r"faults\[0\].rate_kb"):
        parse_faults([{"kind": "bandwidth", "duration": 1, "rate_kb": 0}], "f.yaml")


def _run(tmp_path, redis_url, queue, protocol, faults, expect):
    path = tmp_path / "faults.yaml"
    path.write_text(json.dumps({"faults": faults}))
    report = tmp_path / "verdict.json"
    result = locust("--users", "4", "--spawn-rate", "4", "--run-time", "5s", "--protocol", protocol,
                    "--queue", queue, "--rate", "200", "--work-ms", "20", "--drain-concurrency", "5",
                    "--visibility-timeout", "2", "--max-duplicated", "1000", "--faults", str(path),
                    "--report", str(report), env={"REDIS_URL": redis_url})
    doc = json.loads(report.read_text())
    assert result.returncode == expect, json.dumps({k: v for k, v in doc.items() if not k.endswith("_ids")})
    assert all("error" not in f for f in doc["faults"]), doc["faults"]
    return doc


def test_reliable_loses_nothing_when_the_drains_are_blackholed_and_reset(tmp_path, redis_url, queue):
    doc = _run(tmp_path, redis_url, queue, "reliable", [
        {"kind": "blackhole", "at": 1, "duration": 2, "target": "drain"},
        {"kind": "reset-peer", "at": 3.5, "duration": 0.5, "target": "drain"},
    ], expect=0)
    assert doc["lost"] == 0 and doc["unexpected"] == 0 and doc["completed"] >= doc["enqueued"]
    assert [f["kind"] for f in doc["faults"]] == ["blackhole", "reset-peer"]


def test_the_fault_command_runs_a_partition_through_its_own_proxy(redis_url):
    result = queuestorm("fault", "slicer", "--redis-url", redis_url, "--duration", "0.5", "--size", "4",
                        timeout=30)
    assert result.returncode == 0, result.stderr
    assert "slicer proxy: point clients at redis://127.0.0.1:" in result.stdout

