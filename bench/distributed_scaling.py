"""Aggregate enqueue throughput of 1, 2, 4, ... Locust worker processes against one redis-server.

    python bench/distributed_scaling.py [--max-workers N] [--seconds 10] [--users-per-worker 20] [--payload-kb 0.1]

Each step is a real distributed run on 127.0.0.1: a `locust --master` and N `locust --worker` processes, enqueue
only (`--drain off`: drain processes would compete for the same cores), a private redis-server (deleted keys
between steps). Prints enqueues/s, per worker, and the scaling efficiency against one worker.
"""

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps(max_workers: int) -> list[int]:
    out, n = [], 1
    while n <= max_workers:
        out.append(n)
        n *= 2
    if out[-1] != max_workers:
        out.append(max_workers)
    return out


def run_step(url: str, workers: int, args, directory: str) -> tuple[int, float]:
    from queuestorm.cleanup import delete_run
    from queuestorm.connection import connect

    run_id = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
    queue = f"bench:{run_id}"
    prefix = os.path.join(directory, run_id)
    port = str(free_port())
    users = str(args.users_per_worker * workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QS_") and k != "REDIS_URL"}
    log = open(prefix + ".log", "w")
    quiet = {"stdout": log, "stderr": subprocess.STDOUT, "env": env}
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--headless", "--only-summary",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--expect-workers", str(workers),
         "--users", users, "--spawn-rate", users, "--run-time", f"{int(args.seconds)}s", "--csv", prefix,
         "--redis-url", url, "--queue", queue, "--run-id", run_id, "--drain", "off", "--grace", "0",
         "--payload-kb", str(args.payload_kb)], **quiet)
    procs = [subprocess.Popen([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host",
                               "127.0.0.1", "--master-port", port], **quiet) for _ in range(workers)]
    try:
        master.wait(args.seconds + 120)
    finally:
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    client = connect(url)
    client.delete(queue)
    delete_run(client, run_id)
    if not os.path.exists(prefix + "_stats.csv"):
        with open(prefix + ".log") as f:
            sys.exit(f"the step with {workers} worker(s) failed:\n{f.read()[-3000:]}")
    with open(prefix + "_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "enqueue")
    return int(row["Request Count"]), float(row["Requests/s"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users-per-worker", type=int, default=20)
    parser.add_argument("--payload-kb", type=float, default=0.1)
    parser.add_argument("--redis-url", default="", help="an existing Redis (default: a private redis-server)")
    args = parser.parse_args()
    from queuestorm.embedded import EmbeddedRedis

    server = None
    url = args.redis_url
    if not url:
        server = EmbeddedRedis("redis-server")
        url = server.start()
    print(f"{os.cpu_count()} cores; {args.users_per_worker} users per worker, {args.payload_kb:g} KB jobs, "
          f"{args.seconds:g} s per step, protocol list, drain off", flush=True)
    print(f"{'workers':>7} | {'enqueues':>9} | {'enqueues/s':>10} | {'per worker':>10} | {'efficiency':>10}", flush=True)
    base = None
    try:
        with tempfile.TemporaryDirectory(prefix="queuestorm-bench-") as directory:
            for workers in steps(args.max_workers):
                count, rate = run_step(url, workers, args, directory)
                base = base or rate
                efficiency = rate / (workers * base) if base else 0.0
                print(f"{workers:>7} | {count:>9} | {rate:>10.0f} | {rate / workers:>10.0f} | {efficiency:>9.0%}",
                      flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
