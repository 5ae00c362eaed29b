"""Every protocol under every fault, on a local redis-server: what each queue design loses, duplicates, recovers.

    python bench/fault_matrix.py [--seconds 6] [--rate 500] [--write docs/fault-matrix.md]
    python bench/fault_matrix.py --node-workers 2 --faults "none,kill-drain,pause 1s"    # BullMQ's Node Worker

Each cell is one `locust -f locustfiles/enqueue.py --headless` run with a `--faults` file, checked by queuestorm's
loss checker; the table is made from the verdict JSON of each run. Rows that restart Redis run on an embedded
redis-server that queuestorm starts itself (ledger on a second one), the others on a redis-server this script starts.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from queuestorm.embedded import EmbeddedRedis
from queuestorm.protocols import PROTOCOLS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_DIR = os.path.join(ROOT, "tests", "node")
# with --node-workers: the faults that mean the same with BullMQ's Node Worker as the drain (it connects straight to
# the server, unnamed: client-kill and latency reach the load only; restarts need a server the workers know first)
NODE_FAULTS = ("none", "kill-drain", "client-kill", "pause 1s", "maxclients 12 + client-kill", "latency 20±5 ms")

RESTART = ["--embedded", "redis-server", "--ledger-url", "embedded"]
SENTINEL = ["--embedded", "sentinel", "--ledger-url", "embedded"]
KILL_PRIMARY = {"kind": "failover", "at": 2, "mode": "kill-primary", "lag": 0.5, "down_for": 1}
FAULTS = {  # name -> (faults list, extra locust args)
    "none": ([], []),
    "kill-drain": ([{"kind": "kill-drain", "at": 2, "restart_after": 1}], []),
    "client-kill": ([{"kind": "client-kill", "at": 2, "target": "all"}], []),
    "pause 1s": ([{"kind": "pause", "at": 2, "duration": 1}], []),
    "maxclients 12 + client-kill": ([{"kind": "maxclients", "at": 2, "duration": 2, "maxclients": 12},
                                     {"kind": "client-kill", "at": 2.1, "target": "all"}], []),
    "latency 20±5 ms": ([{"kind": "latency", "at": 2, "duration": 2, "delay_ms": 20, "jitter_ms": 5}], []),
    "restart-redis": ([{"kind": "restart-redis", "at": 2, "down_for": 1}], RESTART),
    "restart-redis + AOF": ([{"kind": "restart-redis", "at": 2, "down_for": 1}], RESTART + ["--aof"]),
    "blackhole drain 2s": ([{"kind": "blackhole", "at": 2, "duration": 2, "target": "drain"}], []),
    "blackhole drain replies 2s": ([{"kind": "blackhole", "at": 2, "duration": 2, "target": "drain",
                                     "direction": "downstream"}], []),
    "blackhole load 2s": ([{"kind": "blackhole", "at": 2, "duration": 2, "target": "load"}], []),
    "reset-peer all 1s": ([{"kind": "reset-peer", "at": 2, "duration": 1}], []),
    "bandwidth 20 KB/s 2s": ([{"kind": "bandwidth", "at": 2, "duration": 2, "rate_kb": 20}], []),
    "slicer 8 B/1 ms 2s": ([{"kind": "slicer", "at": 2, "duration": 2}], []),
    "failover (SENTINEL FAILOVER)": ([{"kind": "failover", "at": 2}], SENTINEL),
    "failover kill-primary": ([KILL_PRIMARY], SENTINEL),
    "failover kill-primary + wait 1": ([KILL_PRIMARY], SENTINEL + ["--wait-replicas", "1", "--wait-timeout-ms", "200"]),
}
COLUMNS = ("enqueued", "maybe_enqueued", "not_sent", "completed", "lost", "duplicated", "unexpected", "recovered")


class NodeWorkers:
    """BullMQ's own Node Worker, wrapped by queuestorm's Node hook (tests/node/bullmq_worker.js), as the drain; the
    kill-drain cell SIGKILLs one at the fault's time and starts it again after its restart_after."""

    def __init__(self, count: int, redis_url: str, queue: str, work_ms: float):
        self.env = dict(os.environ, QS_WORK_MS=str(work_ms))  # the hook's stand-in work, so jobs are in flight
        self.args = ["node", os.path.join(NODE_DIR, "bullmq_worker.js"), f"url={redis_url}", f"queue={queue}",
                     "concurrency=10", "lock=2000"]
        self.procs = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(self.args, cwd=NODE_DIR, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the BullMQ Node worker did not start: npm ci --prefix tests/node")
        return proc

    def kill_one_at(self, at: float, restart_after: float) -> threading.Thread:
        def kill_and_restart():
            time.sleep(at)
            self.procs[0].kill()
            self.procs[0].wait()
            time.sleep(restart_after)
            self.procs[0] = self._start()
        thread = threading.Thread(target=kill_and_restart, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def run_cell(protocol: str, fault: str, redis_url: str, workdir: str, a) -> dict:
    faults, extra = FAULTS[fault]
    queue = f"matrix-{protocol}-{time.time_ns()}"
    node = None
    if a.node_workers:
        node = NodeWorkers(a.node_workers, redis_url, queue, a.work_ms)
        killer = next((f for f in faults if f["kind"] == "kill-drain"), None)
        if killer is not None:  # the bench kills a Node worker itself; Locust's fault only knows its own drains
            node.kill_one_at(killer["at"] + 1, killer["restart_after"])  # +1: Locust's start-up
            faults = [f for f in faults if f is not killer]
        faults = [dict(f, target="load") if f["kind"] == "client-kill" else f for f in faults]
        extra = [*extra, "--drain", "external", "--grace", "30"]
    try:
        return _locust_cell(protocol, queue, faults, extra, redis_url, workdir, a)
    finally:
        if node is not None:
            node.stop()


def _locust_cell(protocol: str, queue: str, faults: list, extra: list, redis_url: str, workdir: str, a) -> dict:
    faults_path = os.path.join(workdir, "faults.yaml")
    report = os.path.join(workdir, "verdict.json")
    with open(faults_path, "w") as f:
        json.dump({"faults": faults}, f)  # JSON is YAML
    if os.path.exists(report):
        os.remove(report)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QS_") and k != "REDIS_URL"}
    if "--embedded" not in extra:
        env["REDIS_URL"] = redis_url
    command = [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), "--headless",
               "--only-summary", "--users", str(a.users), "--spawn-rate", str(a.users), "--run-time", f"{a.seconds}s",
               "--rate", str(a.rate), "--protocol", protocol, "--queue", queue,
               "--work-ms", str(a.work_ms), "--drain-concurrency", "10", "--visibility-timeout", "2",
               "--max-duplicated", "1000000", "--report", report, *(["--faults", faults_path] if faults else []), *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if not os.path.exists(report):
        return {"error": f"exit {result.returncode}: " + result.stderr.strip().splitlines()[-1]}
    with open(report) as f:
        doc = json.load(f)
    doc["fault_errors"] = [x["error"] for x in doc.get("faults", []) if "error" in x]
    return doc


def table(rows: list[tuple[str, str, dict]]) -> str:
    lines = ["| protocol | fault | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " | verdict |",
             "|---|---|" + "---:|" * len(COLUMNS) + "---|"]
    for protocol, fault, doc in rows:
        if "error" in doc:
            lines.append(f"| {protocol} | {fault} | " + " | ".join("–" for _ in COLUMNS) + f" | {doc['error']} |")
            continue
        verdict = doc["verdict"].upper() + (f" (fault error: {'; '.join(doc['fault_errors'])})"
                                            if doc["fault_errors"] else "")
        lines.append(f"| {protocol} | {fault} | " + " | ".join(str(doc[c]) for c in COLUMNS) + f" | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--work-ms", type=float, default=20, help="work per job in the drain, so jobs are in flight")
    p.add_argument("--protocols", default=",".join(PROTOCOLS))
    p.add_argument("--faults", default=",".join(FAULTS), help="comma-separated names from the table")
    p.add_argument("--write", help="also write the table, with the command, to this Markdown file")
    p.add_argument("--node-workers", type=int, default=0,
                   help="drain with this many of BullMQ's Node Workers (protocol bullmq; tests/node, npm ci) instead")
    a = p.parse_args()
    if a.node_workers:
        a.protocols = "bullmq"
        a.faults = ",".join(f for f in a.faults.split(",") if f in NODE_FAULTS)
    server = EmbeddedRedis("redis-server")
    url = server.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for fault in a.faults.split(","):
                for protocol in a.protocols.split(","):
                    doc = run_cell(protocol, fault, url, workdir, a)
                    rows.append((protocol, fault, doc))
                    print(f"{protocol:9} {fault:28} " + ("  ".join(f"{c}={doc.get(c)}" for c in COLUMNS)
                                                         if "error" not in doc else doc["error"]), flush=True)
    finally:
        server.stop()
    text = table(rows)
    print("\n" + text)
    if a.write:
        with open(a.write, "w") as f:
            f.write(f"# Fault matrix\n\nProduced on {time.strftime('%Y-%m-%d')} by\n\n"
                    f"    python bench/fault_matrix.py {' '.join(sys.argv[1:])}\n\n"
                    f"{a.users} users at {a.rate:g} enqueues/s for {a.seconds} s, {a.work_ms:g} ms of work per "
                    f"job in one inline drain process of 10 greenlets, visibility timeout 2 s; faults start 2 s "
                    f"into the load.\n\n{text}\n")


if __name__ == "__main__":
    main()
