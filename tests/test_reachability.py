"""What a run refuses in one line, exit 2: a remote worker given the master's loopback Redis, a cluster target."""

from helpers import locust


def test_a_worker_on_another_host_refuses_the_masters_loopback_redis():
    from queuestorm.reachability import unreachable_loopback

    assert unreachable_loopback("redis://127.0.0.1:6379/0", "192.0.2.10")  # TEST-NET-1: never this machine's
    assert unreachable_loopback("redis://localhost:6379/0", "192.0.2.10")
    assert not unreachable_loopback("redis://127.0.0.1:6379/0", "127.0.0.1")
    assert not unreachable_loopback("redis://127.0.0.1:6379/0", "localhost")
    assert not unreachable_loopback("redis://10.1.2.3:6379/0", "192.0.2.10")
    assert not unreachable_loopback("", "192.0.2.10")


def test_a_cluster_target_is_refused_in_one_line():
    result = locust("--run-time", "1s", env={"REDIS_URL": "redis+cluster://127.0.0.1:7000"})
    assert result.returncode == 2
    assert "redis+cluster:// targets are not supported by runs yet" in result.stderr.strip().splitlines()[-1]
