"""Every performance goal of docs/performance.md, measured in one run: one table, exit status 0 when all hold.

    python bench/goals.py [--quick]

Runs, one after another, each benchmark of this folder with the settings docs/performance.md states, prints their
own tables as they go, then the goals: figure, goal, holds. `--quick` shortens every run (3 rounds of 4 s, a
1,000-user memory run) to see that everything works; its figures are noisier. Exit status 1 when a goal does not
hold, as queuestorm's own runs do.
"""

import argparse
import sys

import batch_enqueue
import check_10m
import drain_throughput
import enqueue_throughput
import latency_truth
import master_scale
import user_memory
from harness import median


def ratio(rounds: list[dict], num: str, den: str) -> float:
    return median([row[num] / row[den] for row in rounds if row[den]])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, rounds = ("4", "3") if args.quick else ("6", "5")

    print("== enqueue: queuestorm against the naive users, and with the ledger's recording stubbed out", flush=True)
    enqueue = enqueue_throughput.main(["--seconds", seconds, "--rounds", rounds, "--variants",
                                       "naive-pooled,naive-per-user,queuestorm,queuestorm-noledger"])
    print("\n== batched enqueue: one Locust process with --batch 100 against redis-benchmark's pipelined LPUSH",
          flush=True)
    batch = batch_enqueue.main(["--seconds", "3" if args.quick else "5", "--rounds", "3"])
    print("\n== drain: one drain process against one Locust process, per protocol", flush=True)
    drain = drain_throughput.main(["--seconds", "4" if args.quick else "5", "--rounds", "3"])
    print("\n== loss check of 10 million jobs", flush=True)
    check = check_10m.main(["--producers", "4"])
    print("\n== memory per EnqueueUser", flush=True)
    memory = user_memory.main(["--users", "1000" if args.quick else "10000"])
    print("\n== latency truth", flush=True)
    latency = latency_truth.main(["--seconds", seconds])
    print("\n== a master with 500 simulated workers: queuestorm against plain Locust", flush=True)
    master = master_scale.main(["--workers", "500", "--seconds", "6" if args.quick else "10", "--rounds", "2"])[500]

    by_round, cpu = enqueue["rounds"], enqueue["cpu_rounds"]
    rows = [
        ("enqueue events/s, 1 process, 50 users, ledger on", f"{enqueue['events_per_s']['queuestorm']:,.0f}",
         ">= 15,000", enqueue["events_per_s"]["queuestorm"] >= 15_000),
        ("  / naive user sharing one ConnectionPool", f"{ratio(by_round, 'queuestorm', 'naive-pooled'):.2f}x",
         ">= 3x", ratio(by_round, "queuestorm", "naive-pooled") >= 3),
        ("  / naive user with its own connection", f"{ratio(by_round, 'queuestorm', 'naive-per-user'):.2f}x",
         ">= 1.6x", ratio(by_round, "queuestorm", "naive-per-user") >= 1.6),
        ("ledger cost: client CPU per enqueue, on / off", f"{ratio(cpu, 'queuestorm', 'queuestorm-noledger'):.2f}x",
         "<= 1.10x", ratio(cpu, "queuestorm", "queuestorm-noledger") <= 1.10),
    ]
    rows += [
        ("--batch 100, 1 process, ledger on / redis-benchmark's best pipelined rate", f"{batch['vs_benchmark']:.0%}",
         ">= 40 %", batch["vs_benchmark"] >= 0.40),
        ("--batch 100: the ledger's cost (client CPU per job, on / off - 1)", f"{batch['ledger_cost']:.0%}", "<= 10 %",
         batch["ledger_cost"] <= 0.10),
        ("--batch 100: inline drain's backlog growth / jobs enqueued", f"{batch['drain_backlog_share']:.0%}",
         "shown", True),
    ]
    rows += [(f"drain / enqueue, {protocol}", f"{r:.2f}x", f">= {drain_throughput.GOAL:g}x", r >= drain_throughput.GOAL)
             for protocol, r in drain.items()]
    rows += [
        ("10 M-job loss check: wall time", f"{check['seconds']:.2f} s", "<= 5 s", check["seconds"] <= 5),
        ("10 M-job loss check: peak memory", f"{check['peak_mb']:.1f} MB", "<= 50 MB", check["peak_mb"] <= 50),
        ("10 M-job loss check: classified right", str(check["correct"]), "True", check["correct"]),
        ("memory per EnqueueUser", f"{memory['kb_per_user']:.1f} KB", "<= 50 KB", memory["kb_per_user"] <= 50),
        (f"{memory['users']:,} users in one process, failed enqueues", str(memory["failures"]), "0",
         memory["failures"] == 0),
    ]
    for result in latency:
        recorded, stopwatch = result["recorded"][0], result["stopwatch"][0]
        rows.append((f"enqueue p50 at {result['users']} user(s): round trip / stopwatch",
                     f"{recorded:.3f} / {stopwatch:.3f} ms", "recorded <= stopwatch", recorded <= stopwatch))
    rows += [
        ("master CPU at 500 simulated workers, queuestorm / plain Locust", f"{master['ratio']:.2f}x", "<= 1.2x",
         master["ratio"] <= 1.2),
        ("  its slowest web answer (/, /stats/requests, /queuestorm/stats), p95", f"{master['worst_p95_ms']:.0f} ms",
         "< 200 ms", master["worst_p95_ms"] < 200),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'goal':<{width}}  {'measured':>22}  {'wanted':>22}  holds")
    for name, measured, wanted, holds in rows:
        print(f"{name:<{width}}  {measured:>22}  {wanted:>22}  {'yes' if holds else 'NO'}")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
