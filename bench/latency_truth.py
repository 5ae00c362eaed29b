"""What an enqueue's recorded response time is: the Redis round trip, not the wait for gevent to resume the user.

    python bench/latency_truth.py [--seconds 6] [--users 1,50,500]

For each user count, one Locust process of queuestorm EnqueueUsers (list, 1 KB, ledger on, no rate limit) against
a private redis-server. Per enqueue it keeps two figures:

  recorded   what queuestorm gives Locust: from just before the send to the kernel's receive timestamp of the
             reply (SO_TIMESTAMPNS), i.e. the round trip through the network stack and the server
  stopwatch  what a timer around the call measures (what Locust records for a naive user): the round trip plus
             the time the greenlet waited, reply in hand, for the event loop to run it again

and prints their percentiles side by side, with the server's own time per LPUSH (INFO commandstats) for scale.
"""

import argparse
import os
import sys
import time

from harness import private_server, run_child

WARMUP = 2.0
PERCENTILES = (50, 95, 99)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def measure(url: str, users: int, seconds: float) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import redis
    from locust import events
    from locust.argument_parser import parse_options
    from locust.env import Environment

    from queuestorm.model.environment import state_of
    from queuestorm.users import EnqueueUser

    queue = f"bench-latency-{os.getpid()}"
    options = parse_options(args=["-f", "x.py", "--redis-url", url, "--drain", "off", "--grace", "0",
                                  "--queue", queue])
    env = Environment(user_classes=[EnqueueUser], events=events, parsed_options=options)
    runner = env.create_local_runner()
    events.init.fire(environment=env, runner=runner, web_ui=None)
    recorded, stopwatch, measuring = [], [], [False]

    @events.request.add_listener
    def _keep(name, response_time, exception, context, **_):
        if measuring[0] and name == "enqueue" and exception is None and "stopwatch" in context:
            recorded.append(response_time)
            stopwatch.append(context["stopwatch"])

    admin = redis.Redis.from_url(url)
    runner.start(users, spawn_rate=min(users, 1000))
    gevent.sleep(WARMUP)
    admin.config_resetstat()
    measuring[0], started = True, time.monotonic()
    gevent.sleep(seconds)
    measuring[0] = False
    elapsed = time.monotonic() - started
    server_us = admin.info("commandstats").get("cmdstat_lpush", {}).get("usec_per_call", float("nan"))
    runner.quit()
    state_of(env).session.shutdown()
    admin.unlink(queue)
    return {"users": users, "events_per_s": len(recorded) / elapsed, "server_us": server_us,
            "recorded": [percentile(recorded, p) for p in PERCENTILES],
            "stopwatch": [percentile(stopwatch, p) for p in PERCENTILES]}


def main(argv=None) -> list:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--users", default="1,50,500")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.child:
        import json

        print(json.dumps(measure(args.url, int(args.users), args.seconds)))
        return []
    server = private_server()
    url = f"redis://127.0.0.1:{server.port}/0"
    try:
        results = [run_child(__file__, "--url", url, "--users", n, "--seconds", str(args.seconds))
                   for n in args.users.split(",")]
    finally:
        server.stop()
    head = "  ".join(f"p{p:<2} rec / stopwatch" for p in PERCENTILES)
    print("enqueue response time, ms (recorded = round trip; stopwatch = round trip + wait for the event loop)")
    print(f"{'users':>5}  {'events/s':>8}  {'server µs':>9}  {head}")
    for r in results:
        cells = "  ".join(f"{rec:6.3f} / {sw:7.3f}  " for rec, sw in zip(r["recorded"], r["stopwatch"]))
        print(f"{r['users']:>5}  {r['events_per_s']:>8,.0f}  {r['server_us']:>9.2f}  {cells}")
    sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
