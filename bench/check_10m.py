"""The loss checker on a 10-million-job run: seconds and peak RSS of the checker process.

    python bench/check_10m.py [--jobs 10000000] [--producers 4]

Builds a synthetic ledger on a private redis-server (the bitmaps a run of that size leaves: every job enqueued and
completed, plus a few lost, duplicated, maybe-enqueued and unexpected ones so every path of the checker runs),
then runs `queuestorm check` as a user would, in its own process, timing it and reading its peak RSS from wait4.
Goal: <= 5 s and <= 50 MB.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import redis

from harness import ROOT, private_server

CHUNK = 1 << 20  # bytes written per SETRANGE


def build_ledger(client: redis.Redis, run_id: str, jobs: int, producers: int) -> dict:
    from queuestorm.keys import RunKeys

    keys = RunKeys(run_id)
    client.hset(keys.meta, mapping={"protocol": "list", "queue": "bench", "created_at": "0"})
    client.set(keys.producer_counter, producers)
    expected = {"lost": 0, "duplicated": 0, "unexpected": 0, "recovered": 0}
    per_producer = jobs // producers
    for pid in range(1, producers + 1):
        issued = per_producer + (jobs % producers if pid == producers else 0)
        full, rest = divmod(issued, 8)
        for key in (keys.enqueued(pid), keys.completed(pid)):
            for start in range(0, full, CHUNK):
                client.setrange(key, start, b"\xff" * min(CHUNK, full - start))
            for bit in range(rest):
                client.setbit(key, full * 8 + bit, 1)
        client.hset(keys.producer(pid), mapping={"issued": issued, "closed": 1, "dropped": 0})
        pipe = client.pipeline(transaction=False)
        for seq in (7, issued // 2, issued - 1):  # lost: enqueue confirmed, never completed
            pipe.setbit(keys.completed(pid), seq, 0)
        for seq in (11, issued // 3):  # duplicated
            pipe.hincrby(keys.duplicates(pid), seq, 1)
        for seq in (13, issued // 4):  # recovered: enqueue raised, yet completed
            pipe.setbit(keys.enqueued(pid), seq, 0)
            pipe.setbit(keys.maybe_enqueued(pid), seq, 1)
        pipe.setbit(keys.enqueued(pid), 17, 0)  # unexpected: completed, never enqueued
        pipe.execute()
        expected["lost"] += 3
        expected["duplicated"] += 2
        expected["recovered"] += 2
        expected["unexpected"] += 1
    return expected


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--producers", type=int, default=4)
    args = parser.parse_args(argv)
    server = private_server()
    url = f"redis://127.0.0.1:{server.port}/0"
    run_id = "bench-check-10m"
    try:
        expected = build_ledger(redis.Redis.from_url(url), run_id, args.jobs, args.producers)
        report = os.path.join(tempfile.mkdtemp(prefix="queuestorm-bench-"), "verdict.json")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "queuestorm", "check", "--run-id", run_id, "--ledger-url", url,
                                 "--json", report], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        out = proc.stdout.read().decode()
        import json

        verdict = json.load(open(report))
        os.unlink(report)
    finally:
        server.stop()
    got = {k: verdict[k] for k in expected}
    print(out[-1500:])
    print(f"jobs {args.jobs:,} in {args.producers} producer(s); checker exit status {os.waitstatus_to_exitcode(status)}")
    print(f"classified as expected: {got == expected} (expected {expected}, got {got}); "
          f"completed {verdict['completed']:,}")
    print(f"checker process: {seconds:.2f} s wall, peak RSS {usage.ru_maxrss / 1024:.1f} MB "
          f"(goal: <= 5 s, <= 50 MB)")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "correct": got == expected}


if __name__ == "__main__":
    main()
