"""The capacity search against systems of known capacity, printing its table and result:

    python bench/capacity_search.py [--case drain|dyno|latency|all] [--step-seconds 10]

drain    an inline drain of --greenlets x --work-ms (at most greenlets x 1000 / work-ms jobs/s): the search must
         report a rate within 15 % below that bound and name the drain fleet
dyno     seed 003's dyno scenario (28 dyno workers in one process, 5 KB tasks): the sustainable tasks/s per dyno
latency  the drain case again behind a 2 ms latency fault (scenarios' latency proxy)

Each case is one `locust --headless --find-capacity` on a private redis-server; searches take minutes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from harness import private_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")


def search(url: str, *args: str, timeout: float = 1800) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        report = os.path.join(directory, "verdict.json")
        done = subprocess.run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary",
                               "--find-capacity", "--redis-url", url, "--report", report, "--run-time", "60m", *args],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        table = done.stdout[done.stdout.find("Capacity search"):done.stdout.find("Processes")]
        print(table.rstrip())
        print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:])
        with open(report) as f:
            return json.load(f)["capacity"]


def drain_case(url: str, options, *extra: str) -> None:
    bound = options.greenlets * 1000 / options.work_ms
    print(f"\n== inline drain: {options.greenlets} greenlets x {options.work_ms:g} ms: at most {bound:g} jobs/s "
          + " ".join(extra))
    result = search(url, "--users", "20", "--spawn-rate", "20", "--rate", str(bound / 4), "--step-seconds",
                    str(options.step_seconds), "--work-ms", str(options.work_ms), "--drain-concurrency",
                    str(options.greenlets), *extra)
    rate = result["sustainable_rate"] or 0
    print(f"sustainable {rate:g} jobs/s = {100 * rate / bound:.0f} % of the bound "
          f"({'within' if 0.85 * bound <= rate <= bound else 'OUTSIDE'} 15 % below it); {result['limiting_factor']}")


def dyno_case(url: str, options) -> None:
    print("\n== seed 003's dyno scenario: 28 dyno workers in one Locust process (one dyno)")
    result = search(url, "--scenario", os.path.join(ROOT, "scenarios", "dyno-concurrency.yaml"), "--rate", "250",
                    "--step-seconds", str(options.step_seconds), "--warmup", "0")
    print(f"sustainable tasks/s per dyno at 28 workers: {result['sustainable_per_process']}; "
          f"{result['limiting_factor']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("drain", "dyno", "latency", "all"), default="drain")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--greenlets", type=int, default=4)
    parser.add_argument("--work-ms", type=float, default=80.0)
    options = parser.parse_args()
    server = private_server()
    try:
        url = server.url
        if options.case in ("drain", "all"):
            drain_case(url, options)
        if options.case in ("latency", "all"):
            drain_case(url, options, "--latency-ms", "2")
        if options.case in ("dyno", "all"):
            dyno_case(url, options)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
