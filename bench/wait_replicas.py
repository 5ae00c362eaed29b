"""What --wait-replicas 1 costs: enqueue events/s of EnqueueUser with and without a WAIT after each enqueue.

    python bench/wait_replicas.py [--seconds 6] [--rounds 3] [--users 50]

One private primary with one replica replicating from it directly (loopback), both redis-server; 1 KB LPUSH on a
list, ledger on the primary; each variant real Locust users in its own process, variants interleaved round by
round. Prints the median events/s of each, the ratio, and the p50/p95 enqueue time.

  no-wait   the default: an enqueue counts once the primary answered
  wait-1    --wait-replicas 1 --wait-timeout-ms 1000: once the replica has it too
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import report_rounds, run_child

VARIANTS = {"no-wait": [], "wait-1": ["--wait-replicas", "1", "--wait-timeout-ms", "1000"]}
WARMUP = 2.0


def primary_and_replica():
    """Two redis-servers on free ports, the second a synced replica of the first; (processes, primary URL, dir)."""
    import redis

    from queuestorm.embedded import _free_port
    from queuestorm.embedded_topology import wait_until

    directory = tempfile.mkdtemp(prefix="queuestorm-bench-wait-")
    ports = [_free_port(), _free_port()]
    processes = []
    for i, port in enumerate(ports):
        extra = ["--replicaof", "127.0.0.1", str(ports[0])] if i else []
        processes.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory, "--dbfilename", f"{port}.rdb", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_until(lambda: redis.Redis(port=ports[1]).info("replication")["master_link_status"] == "up",
               "the replica did not sync")
    return processes, f"redis://127.0.0.1:{ports[0]}/0", directory


def measure(variant: str, url: str, seconds: float, users: int) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust import events
    from locust.argument_parser import parse_options
    from locust.env import Environment

    from queuestorm.model.environment import state_of
    from queuestorm.users import EnqueueUser

    queue = f"bench-wait-{variant}-{os.getpid()}"
    options = parse_options(args=["-f", "x.py", "--redis-url", url, "--drain", "off", "--grace", "0",
                                  "--queue", queue, *VARIANTS[variant]])
    env = Environment(user_classes=[EnqueueUser], events=events, parsed_options=options)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    runner.start(users, spawn_rate=users * 10)
    gevent.sleep(WARMUP)
    env.stats.reset_all()
    started = time.monotonic()
    gevent.sleep(seconds)
    stats = env.stats.get("enqueue", "list")
    elapsed = time.monotonic() - started
    result = {"variant": variant, "events_per_s": stats.num_requests / elapsed, "failures": stats.num_failures,
              "p50_ms": stats.get_response_time_percentile(0.5), "p95_ms": stats.get_response_time_percentile(0.95)}
    runner.quit()
    state_of(env).session.shutdown()
    import redis

    redis.Redis.from_url(url).unlink(queue)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--variant")
    parser.add_argument("--url")
    a = parser.parse_args(argv)
    if a.child:
        import json

        print(json.dumps(measure(a.variant, a.url, a.seconds, a.users)))
        return {}
    processes, url, directory = primary_and_replica()
    try:
        rounds, details = [], []
        for _ in range(a.rounds):
            row = {}
            for variant in VARIANTS:
                result = run_child(__file__, "--variant", variant, "--url", url, "--seconds", str(a.seconds),
                                   "--users", str(a.users))
                row[variant] = result["events_per_s"]
                details.append(result)
            rounds.append(row)
        medians = report_rounds(rounds, {"wait-1 / no-wait": ("wait-1", "no-wait")}, "enqueue events/s")
        for variant in VARIANTS:
            mine = [d for d in details if d["variant"] == variant]
            print(f"  {variant}: enqueue p50 {', '.join(str(d['p50_ms']) for d in mine)} ms, "
                  f"p95 {', '.join(str(d['p95_ms']) for d in mine)} ms, failures {sum(d['failures'] for d in mine)}")
        return medians
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
