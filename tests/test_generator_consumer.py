"""Seed 002: one generator (a Redis lock), BRPOP consumers, an error queue, and a consumer taking over the generator."""

import json
import re
from fractions import Fraction

import pytest

from helpers import ROOT, locust, queuestorm
from queuestorm.generator_lock import GeneratorLock
from queuestorm.generator_options import expected_invalid

USERS = ("GeneratorUser", "ConsumerUser")


def scenario(queue, report, *extra):
    return ("--queue", queue, "--drain", "users", "--generator-interval-ms", "20", "--generator-check-seconds", "0.5",
            "--consumer-work-ms", "1-5", "--report", str(report), *extra, *USERS)


def read(path):
    with open(path) as f:
        return json.load(f)


def log_lines(result, text):
    return [line for line in result.stderr.splitlines() if text in line]


def test_consumers_drain_every_job_and_park_exactly_the_invalid_ones(tmp_path, redis_url, r, queue):
    r.lpush(queue, b"not a queuestorm job")
    report = tmp_path / "verdict.json"
    result = locust("--users", "5", "--spawn-rate", "5", "--run-time", "3s", "--generators", "2",
                    *scenario(queue, report, "--invalid-ratio", "0.2"), env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr[-3000:]
    doc = read(report)
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["maybe_enqueued"] == 0
    assert doc["enqueued"] > 20 and doc["completed"] == doc["enqueued"] and doc["producers"] == 1
    assert r.llen(queue) == 0
    # two GeneratorUsers: one generates, the other stays standby
    assert len(log_lines(result, "started as the generator")) == 1
    assert not log_lines(result, "took over")

    error_queue = f"{queue}:errors"
    invalid_seqs = {seq for seq in range(doc["enqueued"]) if seq % 5 == 4}  # ratio 1/5, one producer
    assert r.llen(error_queue) == len(invalid_seqs) + 1  # + the foreign message

    printed = queuestorm("errors", "--redis-url", redis_url, "--queue", queue)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "not a queuestorm job"  # oldest first
    assert {json.loads(line)["seq"] for line in lines[1:]} == invalid_seqs and len(lines) == len(invalid_seqs) + 1
    assert f"{len(lines)} message(s) removed" in printed.stderr
    assert r.llen(error_queue) == 0


def test_a_stopped_generator_is_replaced_by_exactly_one_consumer(tmp_path, redis_url, r, queue):
    """The scenario file, shortened: its generator stops mid-run, releasing nothing."""
    report = tmp_path / "verdict.json"
    result = locust("--scenario", f"{ROOT}/scenarios/generator-consumer.yaml", "--users", "4", "--spawn-rate", "4",
                    "--run-time", "6s", "--generator-stop-after", "1.5", "--generator-check-seconds", "0.5",
                    "--queue", queue, "--report", str(report), env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr[-3000:]
    doc = read(report)
    assert doc["verdict"] == "pass" and doc["lost"] == 0 and doc["completed"] == doc["enqueued"]

    crashed = log_lines(result, "--generator-stop-after 1.5s")
    takeovers = log_lines(result, "took over as the generator")
    assert len(crashed) == 1 and "GeneratorUser" in crashed[0]
    assert len(takeovers) == 1 and "ConsumerUser" in takeovers[0]
    successor = re.search(r"(ConsumerUser-\S+) took over", takeovers[0]).group(1)
    pushed = {m.group(1): int(m.group(2)) for m in
              (re.search(r"(\S+) stopped generating .*: (\d+) job\(s\) pushed", line)
               for line in log_lines(result, "stopped generating"))}
    assert set(pushed) == {_who(crashed[0]), successor}
    assert pushed[successor] > 0, "generation did not continue after the generator stopped"
    assert sum(pushed.values()) == doc["enqueued"]
    assert r.get(f"queuestorm:generator-lock:{queue}") is None  # the successor released it when the run stopped


def _who(line: str) -> str:
    return re.search(r"(GeneratorUser-\S+) stopped generating", line).group(1)


def test_generator_lock_is_exclusive_and_only_its_owner_renews_or_releases(r, redis_port, queue):
    import redis as redis_lib

    client = redis_lib.Redis(port=redis_port)
    first, second = GeneratorLock(client, queue, "a", 5), GeneratorLock(client, queue, "b", 5)
    assert first.acquire() and not second.acquire()
    assert second.holder() == "a"
    assert not second.renew() and not second.release()
    assert first.renew() and 0 < r.pttl(first.key) <= 5000
    assert first.release() and first.holder() is None
    assert second.acquire()
    second.release()


@pytest.mark.parametrize("ratio", ["0", "0.1", "0.29", "1/3", "1"])
def test_invalid_jobs_are_exactly_floor_n_times_ratio(ratio):
    from queuestorm.generator_options import GeneratorSettings

    settings = GeneratorSettings(0.5, 1, 10, 0, (0, 0), Fraction(ratio), "e")
    for n in (1, 7, 100, 1001):
        assert sum(settings.is_invalid(seq) for seq in range(n)) == expected_invalid(n, ratio) \
            == int(n * Fraction(ratio))


@pytest.mark.parametrize("args, option", [
    (["--consumer-work-ms", "5-1"], "--consumer-work-ms"),
    (["--invalid-ratio", "2"], "--invalid-ratio"),
    (["--generator-interval-ms", "x"], "--generator-interval-ms"),
    (["--generator-check-seconds", "inf"], "--generator-check-seconds"),
    (["--consumer-work-ms", "nan"], "--consumer-work-ms"),
    (["--stats-line", "nan"], "--stats-line"),
    (["--protocol", "stream"], "--protocol 'stream'"),
])
def test_bad_scenario_options_exit_2_naming_the_option(args, option, redis_url):
    result = locust("--users", "1", "--run-time", "1s", "--redis-url", redis_url, "--drain", "users",
                    *args, *USERS, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert option in result.stderr and "Traceback" not in result.stderr


def test_errors_command_bad_input_is_one_line_exit_2(redis_url, r, queue):
    refused = queuestorm("errors", "--redis-url", "redis://:hunter2@127.0.0.1:1/0", "--queue", queue)
    assert refused.returncode == 2 and "hunter2" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "redis://:***@127.0.0.1:1/0" in refused.stderr
    r.set(queue, "a string")
    wrong = queuestorm("errors", "--redis-url", redis_url, "--error-queue", queue)
    assert wrong.returncode == 2 and "WRONGTYPE" in wrong.stderr and "Traceback" not in wrong.stderr
    assert r.get(queue) == b"a string"
