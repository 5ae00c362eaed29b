"""Enqueue events/s from one Locust process: naive users on redis-py vs queuestorm's EnqueueUser (ledger on).

    python bench/enqueue_throughput.py [--seconds 8] [--rounds 3] [--users 50] [--variants a,b,...]

Each variant is real Locust users in an Environment + LocalRunner, in its own process, against one private
redis-server; 1 KB LPUSH onto a list; variants interleaved round by round. Prints timed enqueue events/s and, per
round, the ratio of queuestorm's user to each naive one (median over rounds).

  naive-pooled     every user shares one redis.Redis (its ConnectionPool): `client.lpush(queue, body)`
  naive-per-user   each user owns a redis.Redis(single_connection_client=True)
  queuestorm       queuestorm.users.EnqueueUser, `list` protocol, ledger on (the target)
  queuestorm-noledger  the same with the ledger's recording stubbed out (for the ledger-cost goal)
  queuestorm-nostamp   the same without the kernel's receive timestamps (what the true round trip costs)
"""

import argparse
import os
import resource
import sys
import time

from harness import median, private_server, process_cpu_seconds, report_rounds, run_child

VARIANTS = ("naive-pooled", "naive-per-user", "queuestorm", "queuestorm-noledger", "queuestorm-nostamp")
PAYLOAD = 1024
WARMUP = 2.0


def naive_user_class(variant: str, url: str, queue: str):
    import redis
    from locust import User, constant, task

    body = b"x" * PAYLOAD
    shared = redis.Redis.from_url(url) if variant == "naive-pooled" else None

    class NaiveUser(User):
        wait_time = constant(0)

        def on_start(self):
            self.client = shared or redis.Redis.from_url(url, single_connection_client=True)

        @task
        def enqueue(self):
            with self.environment.events.request.measure("list", "enqueue", len(body)):
                self.client.lpush(queue, body)

    return NaiveUser


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(variant: str, url: str, seconds: float, users: int, protocol: str = "list", queue: str = "",
            keep_queue: bool = False, server_pid: int = 0, extra: tuple = (), batch: int = 1) -> dict:
    """`extra`: more queuestorm arguments (the later wins); with `batch` > 1, events are enqueue_batch requests of
    `batch` jobs, and `jobs_per_s` counts their jobs."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust import events
    from locust.env import Environment

    queue = queue or f"bench-enqueue-{variant}-{os.getpid()}"
    if variant.startswith("queuestorm"):
        from locust.argument_parser import parse_options

        from queuestorm.model.environment import state_of
        from queuestorm.users import EnqueueUser

        options = parse_options(args=["-f", "x.py", "--redis-url", url, "--drain", "off", "--grace", "0",
                                      "--queue", queue, "--protocol", protocol, "--batch", str(batch), *extra])
        env = Environment(user_classes=[EnqueueUser], events=events, parsed_options=options)
        runner = env.create_local_runner()
        events.init.fire(environment=env, runner=runner, web_ui=None)
        if variant == "queuestorm-nostamp":
            from queuestorm import wire

            wire.DirectConnection._stamp_replies = lambda self, conn: None
        if variant == "queuestorm-noledger":
            @events.test_start.add_listener
            def _null_recorder(environment, **_):
                recorder = state_of(environment).runtime.recorder
                recorder.enqueued = recorder.maybe_enqueued = lambda seq: None
                recorder.enqueued_run = lambda first, count: None
    else:
        env = Environment(user_classes=[naive_user_class(variant, url, queue)], events=events)
        runner = env.create_local_runner()

    runner.start(users, spawn_rate=users * 10)
    gevent.sleep(WARMUP)
    import redis

    target = redis.Redis.from_url(url)
    stats = env.stats.get("enqueue" if batch == 1 else "enqueue_batch", protocol)
    before, failures_before = stats.num_requests, stats.num_failures
    depth_before = target.llen(queue) if protocol == "list" else 0
    started, cpu_started = time.monotonic(), _cpu_seconds()
    server_started = process_cpu_seconds(server_pid) if server_pid else 0.0
    gevent.sleep(seconds)
    server_cpu = process_cpu_seconds(server_pid) - server_started if server_pid else 0.0
    done, failed = stats.num_requests - before, stats.num_failures - failures_before
    elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu_started
    depth_after = target.llen(queue) if protocol == "list" else 0
    runner.quit()
    if variant.startswith("queuestorm"):
        state_of(env).session.shutdown()
    if not keep_queue:
        target.unlink(queue)
    return {"variant": variant, "events_per_s": done / elapsed, "jobs_per_s": (done - failed) * batch / elapsed,
            "backlog_per_s": (depth_after - depth_before) / elapsed, "cpu_us_per_event": cpu / max(done, 1) * 1e6,
            "server_cpu_us_per_event": server_cpu / max(done, 1) * 1e6, "server_cores": server_cpu / elapsed,
            "client_cores": cpu / elapsed,
            "failures": failed,
            "total": stats.num_requests - stats.num_failures}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--variants", default=",".join(VARIANTS[:3]))
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--variant")
    parser.add_argument("--url")
    parser.add_argument("--server-pid", type=int, default=0)
    args = parser.parse_args(argv)
    if args.child:
        import json

        print(json.dumps(measure(args.variant, args.url, args.seconds, args.users, server_pid=args.server_pid)))
        return {}
    variants = args.variants.split(",")
    server = private_server()
    url = f"redis://127.0.0.1:{server.port}/0"
    rounds, cpu_rounds, cores_rounds = [], [], []
    try:
        for _ in range(args.rounds):
            row, cpu_row, cores_row = {}, {}, {}
            order = variants if len(rounds) % 2 == 0 else variants[::-1]  # alternate, so no variant always runs first
            for variant in order:
                result = run_child(__file__, "--variant", variant, "--url", url, "--seconds", str(args.seconds),
                                   "--users", str(args.users), "--server-pid", str(server._process.pid))
                if result["failures"]:
                    print(f"warning: {variant} had {result['failures']} failed enqueues", file=sys.stderr)
                row[variant] = result["events_per_s"]
                cpu_row[variant] = result["cpu_us_per_event"]
                cores_row[variant] = (result["client_cores"], result["server_cores"])
            row = {v: row[v] for v in variants}
            rounds.append(row)
            cores_rounds.append(cores_row)
            cpu_rounds.append({v: cpu_row[v] for v in variants})
            print(f"round {len(rounds)}: " + "  ".join(f"{n}={v:,.0f}" for n, v in row.items()), flush=True)
    finally:
        server.stop()
    ratios = {}
    if "queuestorm" in variants:
        for base in ("naive-pooled", "naive-per-user"):
            if base in variants:
                ratios[f"queuestorm / {base}"] = ("queuestorm", base)
    if {"queuestorm", "queuestorm-noledger"} <= set(variants):
        ratios["noledger / ledger (cost)"] = ("queuestorm-noledger", "queuestorm")
    events = report_rounds(rounds, ratios, "timed enqueue events/s")
    print()
    cpu_ratios = {}
    if {"queuestorm", "queuestorm-noledger"} <= set(variants):
        cpu_ratios["ledger / noledger (cost)"] = ("queuestorm", "queuestorm-noledger")
    report_rounds(cpu_rounds, cpu_ratios, "client CPU µs per event (user + system, all threads)", digits=1)
    print("\nmedian cores busy while measuring (client process / redis-server), of the machine's", os.cpu_count())
    for variant in variants:
        client = median([r[variant][0] for r in cores_rounds])
        server = median([r[variant][1] for r in cores_rounds])
        print(f"  {variant:<20} {client:4.2f} / {server:4.2f}")
    return {"events_per_s": events, "rounds": rounds, "cpu_rounds": cpu_rounds}


if __name__ == "__main__":
    main()
