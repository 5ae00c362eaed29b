"""Each fault kind on a real redis-server: the verdict's exact classes, and the server left as it was."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from queuestorm.errors import UsageError
from queuestorm.faults import parse_faults

from helpers import locust, queuestorm, read_line, wait_until


def write_faults(tmp_path, *faults) -> str:
    path = tmp_path / "faults.yaml"
    path.write_text("faults:\n" + "".join(f"  - {json.dumps(f)}\n" for f in faults))
    return str(path)


def run(tmp_path, redis_url, queue, protocol, faults, *args, seconds=4, expect=0):
    report = tmp_path / "verdict.json"
    env = {"REDIS_URL": redis_url} if redis_url else {}
    result = locust("--users", "5", "--spawn-rate", "5", "--run-time", f"{seconds}s", "--protocol", protocol,
                    "--queue", queue, "--faults", write_faults(tmp_path, *faults), "--report", str(report),
                    "--max-duplicated", "1000", *args, env=env)
    doc = json.loads(report.read_text()) if report.exists() else None
    assert result.returncode == expect, "\n".join(
        [json.dumps({k: v for k, v in (doc or {}).items() if not k.endswith("_ids")})]
        + [line for line in result.stderr.splitlines() if "queuestorm" in line])
    assert [f["kind"] for f in doc["faults"]] == [f["kind"] for f in faults]
    assert all("error" not in f for f in doc["faults"]), doc["faults"]
    return doc


def killed(doc, index: int) -> int:
    """How many connections a client-kill fault of the run killed: a fault fired at its offset, not at an event,
    so each test asserts the fault found what it was meant to hit (an offset that came too early fails, loudly)."""
    detail = doc["faults"][index]["detail"]
    assert detail.startswith("killed ") and detail.endswith(" connection(s)"), detail
    return int(detail.split()[1])


def test_fault_lists_are_validated_naming_file_and_field():
    with pytest.raises(UsageError, match=r"f.yaml: faults\[1\].kind: unknown fault 'meteor'"):
        parse_faults([{"kind": "pause", "duration": 1}, {"kind": "meteor"}], "f.yaml")
    with pytest.raises(UsageError, match=r"f.yaml: faults\[0\].durtion: unknown field for pause"):
        parse_faults([{"kind": "pause", "durtion": 1}], "f.yaml")
    with pytest.raises(UsageError, match=r"faults\[0\].duration: pause needs a duration above 0"):
        parse_faults([{"kind": "pause"}], "f.yaml")
    with pytest.raises(UsageError, match=r"faults\[0\].target: 'everyone' is not one of load, drain, all"):
        parse_faults([{"kind": "client-kill", "target": "everyone"}], "f.yaml")
    with pytest.raises(UsageError, match=r"faults\[0\].at: 'soon' is not a number of seconds"):
        parse_faults([{"kind": "kill-drain", "at": "soon"}], "f.yaml")
    assert parse_faults([{"kind": "kill-drain", "at": "2.5s", "count": 2}], "f.yaml")[0].params == {"count": 2}


@pytest.mark.parametrize("protocol", ["reliable", "stream"])
def test_reliable_protocols_lose_nothing_under_kill_drain_client_kill_and_pause(protocol, tmp_path, redis_url,
                                                                                queue, r):
    doc = run(tmp_path, redis_url, queue, protocol, [
        {"kind": "kill-drain", "at": 1, "restart_after": 0.5},
        {"kind": "client-kill", "at": 2, "target": "all"},
        {"kind": "pause", "at": 2.5, "duration": 0.5},
    ], "--work-ms", "20", "--drain-concurrency", "10", "--rate", "300", "--visibility-timeout", "2", seconds=5)
    assert doc["faults"][0]["detail"] == "SIGKILL drain process(es) [0]"
    assert killed(doc, 1) >= 1 and doc["faults"][2]["detail"] == "CLIENT PAUSE 0.5s write"
    assert doc["lost"] == 0 and doc["unexpected"] == 0
    assert doc["completed"] == doc["enqueued"] + doc["recovered"]
    assert r.ping()


def test_list_loses_the_jobs_in_flight_when_a_drain_is_killed(tmp_path, redis_url, queue):
    """Every drain greenlet holds one job for 200 ms of work: a SIGKILL loses those, at most one per greenlet.
    (tests/test_protocols.py counts the jobs in flight independently and finds the loss equal to them.) The rate
    is just above the drain's 25 jobs/s, so every greenlet is busy at the kill and the backlog stays short."""
    doc = run(tmp_path, redis_url, queue, "list", [{"kind": "kill-drain", "at": 1.5, "restart_after": 0.5}],
              "--work-ms", "200", "--drain-concurrency", "5", "--rate", "30", expect=1)
    assert doc["faults"][0]["detail"] == "SIGKILL drain process(es) [0]"
    assert 1 <= doc["lost"] <= 5 and doc["unexpected"] == 0
    assert doc["completed"] + doc["lost"] == doc["enqueued"] + doc["recovered"]


def test_enqueues_that_raised_are_maybe_enqueued_and_if_completed_recovered_never_unexpected(tmp_path, redis_url,
                                                                                          queue):
    doc = run(tmp_path, redis_url, queue, "list", [
        {"kind": "client-kill", "at": 1, "target": "load"},
        {"kind": "client-kill", "at": 1.5, "target": "load"},
        {"kind": "client-kill", "at": 2, "target": "load"},
    ])
    assert all(killed(doc, i) >= 1 for i in range(3)), doc["faults"]  # the load was running at each offset
    assert doc["maybe_enqueued"] >= 1
    assert doc["lost"] == 0 and doc["unexpected"] == 0
    assert doc["completed"] == doc["enqueued"] + doc["recovered"]


def test_maxclients_and_pause_leave_the_server_as_it_was(tmp_path, redis_url, queue, r):
    before = r.config_get("maxclients")["maxclients"]
    doc = run(tmp_path, redis_url, queue, "reliable", [
        {"kind": "maxclients", "at": 0.5, "duration": 30, "maxclients": 3},
        {"kind": "pause", "at": 1, "duration": 30},
    ], seconds=2)
    assert r.config_get("maxclients")["maxclients"] == before
    pinger = redis.Redis.from_url(redis_url, socket_timeout=2)
    assert pinger.lpush(queue + "-probe", "x") == 1  # a write goes through: the pause was lifted
    assert doc["faults"][0]["detail"].endswith("-> 3 for 30s")
    assert doc["lost"] == 0


def test_latency_fault_slows_the_load_through_the_proxy(tmp_path, redis_url, queue):
    doc = run(tmp_path, redis_url, queue, "list", [
        {"kind": "latency", "at": 0.5, "duration": 2, "delay_ms": 30, "jitter_ms": 5},
    ])
    assert doc["lost"] == 0 and doc["verdict"] == "pass"
    assert doc["e2e_ms"]["max"] >= 30


def test_restart_redis_with_aof_keeps_reliable_jobs_and_the_ledger_elsewhere(tmp_path, queue):
    doc = run(tmp_path, None, queue, "reliable", [{"kind": "restart-redis", "at": 1.5, "down_for": 0.5}],
              "--embedded", "redis-server", "--aof", "--ledger-url", "embedded", "--rate", "300")
    assert doc["lost"] == 0 and doc["unexpected"] == 0 and doc["enqueued"] > 300


def test_restart_redis_without_persistence_loses_the_queue(tmp_path, queue):
    """The drain (40 jobs/s) is slower than the load (60/s): a backlog is queued when the server restarts."""
    doc = run(tmp_path, None, queue, "list", [{"kind": "restart-redis", "at": 1.5, "down_for": 0.5}],
              "--embedded", "redis-server", "--ledger-url", "embedded", "--rate", "60", "--work-ms", "50",
              "--drain-concurrency", "2", expect=1)
    assert doc["lost"] > 0


@pytest.mark.parametrize("args, message", [
    (["--redis-url", "REDIS"], "restart-redis needs a redis-server that queuestorm starts itself"),
    (["--embedded", "redis-server"], "would restart the server holding the ledger"),
])
def test_restart_redis_is_refused_where_it_cannot_be_done_safely(tmp_path, redis_url, args, message):
    args = [redis_url if a == "REDIS" else a for a in args]
    result = locust("--users", "1", "--run-time", "1s", "--faults",
                    write_faults(tmp_path, {"kind": "restart-redis", "at": 1}), *args, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_fault_cli_lowers_maxclients_and_restores_it_on_sigterm(redis_url, r):
    before = r.config_get("maxclients")["maxclients"]
    proc = subprocess.Popen([sys.executable, "-m", "queuestorm", "fault", "maxclients", "--redis-url", redis_url,
                             "--maxclients", "7", "--duration", "60"], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: r.config_get("maxclients")["maxclients"] == "7", "maxclients lowered to 7", 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert r.config_get("maxclients")["maxclients"] == before


def test_fault_cli_pause_holds_writes_for_its_duration_then_lifts(redis_url, r, queue):
    proc = subprocess.Popen([sys.executable, "-m", "queuestorm", "fault", "pause", "--redis-url", redis_url,
                             "--duration", "1"], stderr=subprocess.PIPE, text=True)
    said = read_line(proc.stderr, "the pause CLI's first line", 30)  # printed once the pause is in force
    assert "CLIENT PAUSE 1s write" in said, said + proc.stderr.read()
    started = time.monotonic()
    r.lpush(queue + "-paused", "x")
    waited = time.monotonic() - started
    assert proc.wait(10) == 0, proc.stderr.read()
    assert waited > 0.1


@pytest.mark.parametrize("args, message", [
    (["pause", "--mode", "sometimes", "--duration", "1"], "--mode: 'sometimes' is not one of all, write"),
    (["maxclients"], "--duration: maxclients needs a duration above 0"),
    (["latency", "--duration", "1", "--listen-port", "PORT"], "could not listen on 127.0.0.1:"),
])
def test_fault_cli_refuses_bad_input_in_one_line(redis_url, redis_port, args, message):
    args = [str(redis_port) if a == "PORT" else a for a in args]
    result = queuestorm("fault", *args, "--redis-url", redis_url)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def named_clients(port, *names):
    clients = []
    for name in names:
        client = redis.Redis(port=port, client_name=name, single_connection_client=True)
        client.ping()
        clients.append(client)
    return clients


def client_ids(r) -> dict[str, set]:
    ids: dict[str, set] = {}
    for c in r.client_list():
        ids.setdefault(c.get("name", ""), set()).add(c["id"])
    return ids


def test_client_kill_picks_this_runs_connections_only_unless_all_runs(redis_port, redis_url, r):
    names = ("queuestorm-load:run-a", "queuestorm-drain:run-a", "queuestorm-load:run-b", "queuestorm-drain:run-b",
             "queuestorm-drain", "someone-else")
    clients = named_clients(redis_port, *names)
    try:
        before = client_ids(r)
        result = queuestorm("fault", "client-kill", "--target", "drain", "--run-id", "run-a", "--redis-url", redis_url)
        assert result.returncode == 0, result.stderr
        after = client_ids(r)
        assert "queuestorm-drain:run-a" not in after
        assert all(after.get(name) == before[name] for name in names if name != "queuestorm-drain:run-a")
        result = queuestorm("fault", "client-kill", "--target", "drain", "--redis-url", redis_url)
        assert result.returncode == 2 and "--run-id" in result.stderr and "--all-runs" in result.stderr
        result = queuestorm("fault", "client-kill", "--target", "drain", "--all-runs", "--redis-url", redis_url)
        assert result.returncode == 0, result.stderr
        after = client_ids(r)
        assert not {"queuestorm-drain:run-b", "queuestorm-drain"} & after.keys()
        assert after["queuestorm-load:run-b"] == before["queuestorm-load:run-b"]
        assert after["someone-else"] == before["someone-else"]
    finally:
        for client in clients:
            client.close()


def test_a_drain_started_by_a_run_names_its_connections_with_the_run_id(redis_port, redis_url, r, queue):
    proc = subprocess.Popen([sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--queue", queue,
                             "--concurrency", "2"], env=dict(os.environ, QS_RUN_ID="run-c"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(client_ids(r).get("queuestorm-drain:run-c", ())) >= 2,
                   "the drain's two consumers to connect", 20)  # one after the other
        names = client_ids(r)
        assert len(names.get("queuestorm-drain:run-c", ())) >= 2 and "queuestorm-drain" not in names
    finally:
        proc.terminate()
        proc.wait(20)
