"""Jobs/s of one Locust process with --batch 100 beside redis-benchmark's pipelined LPUSH, on one private server.

    python bench/batch_enqueue.py [--seconds 5] [--rounds 3] [--users 50] [--batch 100]

Each round runs, on the same private redis-server, one after another (order alternating round by round):

  redis-benchmark -P 16 / -P 100   `-c 50 -d 1024 -t lpush`, the server's pipelined rate (the best of the two is the
                                   baseline)
  queuestorm                       one Locust process, 50 EnqueueUsers, `list`, --batch 100, ledger on, no drain
  queuestorm-noledger              the same with the ledger's recording stubbed out (the ledger's cost)
  queuestorm-drain                 the same, ledger on, with the inline drain (--drain inline): whether it keeps up,
                                   by how fast the queue grows while measuring

Prints jobs/s per variant, and per round the ratio of queuestorm to the best redis-benchmark rate, of noledger to
ledger, the client's CPU per job with the ledger on and off (the ledger's cost: CPU time, which the machine's other
load disturbs less than rates), and the drain's backlog growth as a share of the jobs enqueued. The machine's cores
are shared: the ratios, measured side by side, are the figures; absolute rates drift.
"""

import argparse
import subprocess
import sys

from enqueue_throughput import measure
from harness import median, private_server, report_rounds, run_child

PAYLOAD = 1024
PIPELINES = (16, 100)
CLIENTS = 50
QUEUESTORM = {"queuestorm": (), "queuestorm-noledger": (), "queuestorm-drain": ("--drain", "inline")}
MEASURED_VARIANT = {"queuestorm-noledger": "queuestorm-noledger"}  # what enqueue_throughput.measure stubs out


def redis_benchmark(port: int, pipeline: int, requests: int) -> float:
    """LPUSH requests/s as redis-benchmark reports it; its list is deleted after."""
    done = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS), "-d",
                           str(PAYLOAD), "-t", "lpush", "-P", str(pipeline), "-n", str(requests), "--csv"],
                          capture_output=True, text=True, timeout=300, check=True)
    row = next(line for line in done.stdout.splitlines() if line.startswith('"LPUSH'))
    subprocess.run(["redis-cli", "-p", str(port), "DEL", "mylist"], capture_output=True, check=True)
    return float(row.split(",")[1].strip('"'))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--variant")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.child:
        import json

        result = measure(MEASURED_VARIANT.get(args.variant, "queuestorm"), args.url, args.seconds, args.users,
                         extra=QUEUESTORM[args.variant], batch=args.batch)
        print(json.dumps(result))
        return {}
    server = private_server()
    url = f"redis://127.0.0.1:{server.port}/0"
    rounds, backlog, cpu_rounds = [], [], []
    try:
        for index in range(args.rounds):
            row, cpu_row = {}, {}
            steps = [f"redis-benchmark -P {p}" for p in PIPELINES] + list(QUEUESTORM)
            for step in steps if index % 2 == 0 else steps[::-1]:
                if step.startswith("redis-benchmark"):
                    pipeline = int(step.rsplit(" ", 1)[1])
                    row[step] = redis_benchmark(server.port, pipeline, int(150_000 * args.seconds))
                    continue
                result = run_child(__file__, "--variant", step, "--url", url, "--seconds", str(args.seconds),
                                   "--users", str(args.users), "--batch", str(args.batch))
                if result["failures"]:
                    print(f"warning: {step} had {result['failures']} failed batches", file=sys.stderr)
                row[step] = result["jobs_per_s"]
                cpu_row[step] = result["cpu_us_per_event"] / args.batch
                if step == "queuestorm-drain":
                    backlog.append(result["backlog_per_s"] / max(result["jobs_per_s"], 1))
            row["redis-benchmark best"] = max(row[f"redis-benchmark -P {p}"] for p in PIPELINES)
            rounds.append(row)
            cpu_rounds.append(cpu_row)
            print(f"round {len(rounds)}: " + "  ".join(f"{n}={v:,.0f}" for n, v in row.items()), flush=True)
    finally:
        server.stop()
    medians = report_rounds(rounds, {"queuestorm / redis-benchmark best": ("queuestorm", "redis-benchmark best"),
                                     "noledger / ledger": ("queuestorm-noledger", "queuestorm")},
                            "jobs/s (redis-benchmark: requests/s)")
    print()
    report_rounds(cpu_rounds, {"ledger / noledger (cost)": ("queuestorm", "queuestorm-noledger")},
                  "client CPU µs per job (user + system, all threads)", digits=2)
    share = median(backlog)
    print(f"\ninline drain: the queue grew by {share:.1%} of the jobs enqueued while measuring (median; "
          "per round: " + ", ".join(f"{b:.1%}" for b in backlog) + ")")
    return {"jobs_per_s": medians, "rounds": rounds,
            "vs_benchmark": median([r["queuestorm"] / r["redis-benchmark best"] for r in rounds]),
            "ledger_cost": median([r["queuestorm"] / r["queuestorm-noledger"] for r in cpu_rounds]) - 1,
            "drain_backlog_share": share}


if __name__ == "__main__":
    main()
