"""What the benchmarks share: a private redis-server, variants run in child processes, medians and ratios.

Every figure a benchmark reports is a ratio against a baseline measured in the same run, variants interleaved
round by round, because the machine's cores are shared and absolute rates drift from minute to minute.
"""

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def private_server():
    """A redis-server of our own on a free port; stop() it when done."""
    from queuestorm.embedded import EmbeddedRedis

    server = EmbeddedRedis("redis-server")
    server.start()
    return server


def run_child(script: str, *args: str, timeout: float = 600) -> dict:
    """Run `script --child ARGS` in a fresh process; its last stdout line is a JSON result."""
    done = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (the redis-server), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values):
    return statistics.median(values) if values else float("nan")


def report_rounds(rounds: list[dict[str, float]], baselines: dict[str, tuple[str, str]], unit: str,
                  digits: int = 0) -> dict[str, float]:
    """Print the median of each variant and of each per-round ratio; returns the medians."""
    names = list(rounds[0])
    width = max(len(n) for n in names)
    medians = {n: median([row[n] for row in rounds]) for n in names}
    print(f"\nmedian of {len(rounds)} round(s), {unit}:")
    for n in names:
        print(f"  {n:<{width}}  {medians[n]:>10,.{digits}f}")
    for label, (num, den) in baselines.items():
        ratios = [row[num] / row[den] for row in rounds if row[den]]
        print(f"  {label:<{width + 12}}  {median(ratios):6.2f}x  (per round: "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    return medians


class RedisServer:
    """A bare redis-server on a free port with extra arguments (EmbeddedRedis takes none)."""

    def __init__(self, *extra: str):
        import shutil
        import subprocess
        import tempfile
        import time

        import redis

        from queuestorm.embedded import _free_port

        self._dir = tempfile.mkdtemp(prefix="queuestorm-bench-redis-")
        self._rmtree = shutil.rmtree
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self._dir, *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the benchmark's redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._rmtree(self._dir, ignore_errors=True)
