"""Does one drain process complete jobs with margin over what one Locust process enqueues? Per protocol, every
protocol by default (the job-library formats too), in one run against one private server:

    python bench/drain_throughput.py [--seconds 6] [--rounds 3] [--protocols list,reliable,rq,...] [--concurrency 20]

For each protocol, a Locust process of 50 EnqueueUsers (ledger on, 1 KB) enqueues for --seconds with no drain
running; then one drain process (DrainWorker, --concurrency greenlets, default batch, no work per job) completes
every job that was enqueued: fetch, record in the ledger, ack. Prints both rates and drain / enqueue (goal: >= 2).
"""

import argparse
import io
import json
import sys
import time

from harness import median, private_server, run_child

GOAL = 2.0  # drain / enqueue: a drain with margin, so the queue's backlog never grows from the drain's side


def drain(url: str, protocol: str, queue: str, concurrency: int, expected: int) -> dict:
    from gevent import monkey

    monkey.patch_all()
    import gevent

    from queuestorm.drain import DrainWorker

    worker = DrainWorker(url, protocol, queue, concurrency=concurrency, until_empty=True, stats_interval=3600,
                         out=io.StringIO())
    started = time.monotonic()
    runner = gevent.spawn(worker.run)
    while worker.completed < expected and not runner.dead:
        gevent.sleep(0.01)
    finished = worker._last_completion
    worker.stop()
    runner.join(30)
    return {"completed": worker.completed, "jobs_per_s": worker.completed / (finished - started),
            "errors": worker.errors}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--protocols", help="comma-separated (default: every protocol)")
    parser.add_argument("--child", choices=("enqueue", "drain"))
    parser.add_argument("--url")
    parser.add_argument("--protocol")
    parser.add_argument("--queue")
    parser.add_argument("--expected", type=int)
    args = parser.parse_args(argv)
    if args.child == "enqueue":
        from enqueue_throughput import measure

        print(json.dumps(measure("queuestorm", args.url, args.seconds, args.users, args.protocol, args.queue,
                                 keep_queue=True)))
        return {}
    if args.child == "drain":
        print(json.dumps(drain(args.url, args.protocol, args.queue, args.concurrency, args.expected)))
        return {}
    if args.protocols:
        protocols = args.protocols.split(",")
    else:
        from queuestorm.protocols import PROTOCOLS  # here, not above: a child patches gevent before redis is imported

        protocols = list(PROTOCOLS)
    server = private_server()
    url = f"redis://127.0.0.1:{server.port}/0"
    results = {p: [] for p in protocols}
    try:
        for round_no in range(1, args.rounds + 1):
            for protocol in protocols:
                queue = f"bench-drain-{protocol}-{round_no}"
                enq = run_child(__file__, "enqueue", "--url", url, "--protocol", protocol, "--queue", queue,
                                "--seconds", str(args.seconds), "--users", str(args.users))
                done = run_child(__file__, "drain", "--url", url, "--protocol", protocol, "--queue", queue,
                                 "--concurrency", str(args.concurrency), "--expected", str(enq["total"]))
                if done["completed"] != enq["total"] or done["errors"]:
                    print(f"warning: {protocol}: enqueued {enq['total']}, completed {done['completed']}, "
                          f"{done['errors']} errors", file=sys.stderr)
                results[protocol].append((enq["events_per_s"], done["jobs_per_s"]))
                print(f"round {round_no} {protocol:>11}: enqueue {enq['events_per_s']:>8,.0f}/s  "
                      f"drain {done['jobs_per_s']:>8,.0f}/s  ratio {done['jobs_per_s'] / enq['events_per_s']:.2f}",
                      flush=True)
    finally:
        server.stop()
    print(f"\nmedian of {args.rounds} round(s): one drain process ({args.concurrency} greenlets) vs one Locust process "
          f"({args.users} users)")
    for protocol, rows in results.items():
        print(f"  {protocol:>11}: enqueue {median([e for e, _ in rows]):>8,.0f}/s  drain "
              f"{median([d for _, d in rows]):>8,.0f}/s  drain/enqueue {median([d / e for e, d in rows]):.2f}x")
    return {protocol: median([d / e for e, d in rows]) for protocol, rows in results.items()}


if __name__ == "__main__":
    main()
