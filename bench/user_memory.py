"""Memory per EnqueueUser: 10,000 users in one Locust process, each with its own connection.

    python bench/user_memory.py [--users 10000] [--rate 2000]

One process (Environment + LocalRunner), ledger on, --rate shared by all users so the server is not the subject.
RSS is read with 100 users running, then with 100 + --users running (every one of them connected and past its
first enqueue); the difference divided by --users is the memory one user costs. Goal: <= 50 KB per user.
"""

import argparse
import gc
import json
import resource
import sys
import time

from harness import RedisServer, run_child

BASE_USERS = 100
PAGE = resource.getpagesize()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def settle(gevent, env, users: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env.runner.user_count >= users and env.stats.get("enqueue", "list").num_requests >= users:
            break
        gevent.sleep(0.5)
    gevent.sleep(2)
    gc.collect()


def measure(url: str, users: int, rate: float) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust import events
    from locust.argument_parser import parse_options
    from locust.env import Environment

    from queuestorm.model.environment import state_of
    from queuestorm.users import EnqueueUser

    options = parse_options(args=["-f", "x.py", "--redis-url", url, "--drain", "off", "--grace", "0",
                                  "--queue", "bench-memory", "--rate", str(rate)])
    env = Environment(user_classes=[EnqueueUser], events=events, parsed_options=options)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    runner.start(BASE_USERS, spawn_rate=BASE_USERS)
    settle(gevent, env, BASE_USERS)
    before = rss_bytes()
    runner.start(BASE_USERS + users, spawn_rate=1000)
    settle(gevent, env, BASE_USERS + users)
    after = rss_bytes()
    stats = env.stats.get("enqueue", "list")
    running = runner.user_count
    requests, failures = stats.num_requests, stats.num_failures
    runner.quit()
    state_of(env).session.shutdown()
    return {"users": running, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
            "kb_per_user": (after - before) / users / 1024, "enqueues": requests, "failures": failures}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.child:
        print(json.dumps(measure(args.url, args.users, args.rate)))
        return {}
    if hard < args.users + 1000:
        sys.exit(f"the open-files limit ({hard}) is too low for {args.users} connections")
    server = RedisServer("--maxclients", str(args.users + 1000))
    try:
        result = run_child(__file__, "--url", server.url, "--users", str(args.users), "--rate", str(args.rate))
    finally:
        server.stop()
    print(f"{result['users']:,} EnqueueUsers running in one process ({BASE_USERS} before the measured "
          f"{args.users:,}); {result['enqueues']:,} enqueues, {result['failures']} failed")
    print(f"RSS {result['rss_before_mb']:.0f} MB -> {result['rss_after_mb']:.0f} MB: "
          f"{result['kb_per_user']:.1f} KB per user (goal: <= 50 KB)")
    return result


if __name__ == "__main__":
    main()
