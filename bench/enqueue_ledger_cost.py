"""What the ledger costs an enqueue: one Locust process, 50 users, 1 KB jobs, `list` protocol, ledger on vs off.

    python bench/enqueue_ledger_cost.py [--seconds 10] [--users 50]

Each variant runs in its own process against one private redis-server; prints enqueues/s and the ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_variant(url: str, variant: str, seconds: float, users: int) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust import events
    from locust.argument_parser import parse_options
    from locust.env import Environment

    from queuestorm.users import EnqueueUser

    options = parse_options(args=["-f", "x.py", "--redis-url", url, "--drain", "off", "--grace", "0",
                                  "--queue", f"bench-{variant}"])
    env = Environment(user_classes=[EnqueueUser], events=events, parsed_options=options)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    if variant == "no-ledger":
        @events.test_start.add_listener
        def _null_recorder(environment, **_):
            recorder = environment.queuestorm.runtime.recorder
            recorder.enqueued = recorder.maybe_enqueued = lambda seq: None

    runner.start(users, spawn_rate=users * 10)
    gevent.sleep(2)
    before = env.stats.get("enqueue", "list").num_requests
    started = time.monotonic()
    gevent.sleep(seconds)
    done = env.stats.get("enqueue", "list").num_requests - before
    rate = done / (time.monotonic() - started)
    runner.quit()
    env.queuestorm.coordinator.shutdown()
    return {"variant": variant, "enqueues_per_s": round(rate)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--variant")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.url, args.variant, args.seconds, args.users)))
        return
    from queuestorm.embedded import EmbeddedRedis

    server = EmbeddedRedis("redis-server")
    url = server.start()
    results = {}
    try:
        for variant in ("ledger", "no-ledger"):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--url", url,
                                  "--seconds", str(args.seconds), "--users", str(args.users)],
                                 capture_output=True, text=True, check=True).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])["enqueues_per_s"]
            print(f"{variant:>10}: {results[variant]:>8} enqueues/s")
    finally:
        server.stop()
    cost = results["no-ledger"] / results["ledger"] - 1
    print(f"ledger cost: {cost * 100:+.1f}% time per enqueue (goal: <= 10%)")


if __name__ == "__main__":
    main()
