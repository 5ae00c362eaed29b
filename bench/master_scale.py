"""A Locust master with N simulated workers: master CPU, and its web answers, for plain Locust and for queuestorm.

    python bench/master_scale.py [--workers 500] [--seconds 15] [--rounds 2] [--variants plain,queuestorm]

`--workers` takes a list (`100,500`). Each variant is one real master process (`locust --master --autostart
--expect-workers N -u N -r N`, its web UI on), and N fake workers in one more process: N zmq DEALER sockets
speaking Locust's protocol through `locust.rpc` (client_ready with the version, a heartbeat every
HEARTBEAT_INTERVAL with state, CPU and memory, spawning/spawning_complete answers to spawn, a stats report every
WORKER_REPORT_INTERVAL with the same request entries in both variants), under gevent. Variants interleaved
round by round.

  plain       `locust -f` a locustfile of one do-nothing User (the master never runs it)
  queuestorm  `locust -f locustfiles/enqueue.py` on a private redis-server, `--drain external` (no drain process
              competes for the cores); the fakes also send what a queuestorm worker sends the master: one
              queuestorm_hello when it starts, then a queuestorm_vitals report {final, counts, vitals} at once and
              every REPORT_SECONDS (counts in ProducerRuntime.counts()'s shape, vitals from a real
              VitalsSampler.summary())
  queuestorm-novitals  (not by default) the same master, the fakes sending hello but no queuestorm_vitals: what
              the vitals reports cost the master

Measured over a steady window once the master runs N users on N workers, and with no web request in it: the
master's CPU seconds per wall second (/proc). Then, one after another, 20 GETs of /, /stats/requests and (queuestorm)
/queuestorm/stats: median and p95 ms. Goal (issue 20): at 500 workers queuestorm's master CPU <= 1.2x plain
Locust's, and its UI and /queuestorm/stats answer in < 200 ms.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import ROOT, RedisServer, median, process_cpu_seconds

VARIANTS = ("plain", "queuestorm")
EXTRA_VARIANTS = ("queuestorm-novitals",)
CPU_GOAL, MS_GOAL = 1.2, 200.0
PROBES = 20
SETTLE = 4.0  # after the master runs every user: the first stats reports and queuestorm reports are in
READY_TIMEOUT = 120
PLAIN_LOCUSTFILE = '''from locust import User, constant, task


class PlainUser(User):
    wait_time = constant(1)

    @task
    def nothing(self):
        pass
'''


# the fake workers -------------------------------------------------------------------------------------------------

def fakes(port: int, workers: int, queuestorm: bool, kinds: str) -> None:
    """N workers in this process until it is terminated. `kinds`: queuestorm's messages to send (hello,vitals)."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from locust import __version__
    from locust.rpc import Message, zmqrpc
    from locust.runners import HEARTBEAT_INTERVAL, STATE_INIT, STATE_RUNNING, STATE_SPAWNING, WORKER_REPORT_INTERVAL
    from locust.stats import RequestStats

    import zmq.green as zmq

    from queuestorm.locust.distributed import HELLO_MESSAGE, REPORT_MESSAGE, REPORT_SECONDS
    from queuestorm.observe.vitals import VitalsSampler

    context = zmq.Context.instance()
    zmqrpc.zmq.Context = lambda: context  # one context (one I/O thread) for the N sockets, not one each
    kinds = set(kinds.split(",")) if queuestorm else set()

    # one interval's Locust statistics as a worker's report carries them, timestamps moved to each report's now
    template = RequestStats()
    rng = random.Random(1)
    for _ in range(3000):
        template.log_request("list", "enqueue", rng.lognormvariate(0, 0.6), 1024)
    for _ in range(3):
        template.log_request("list", "ping", rng.lognormvariate(-0.5, 0.3), 0)
    entries = [e.serialize() for e in template.entries.values()]
    total = template.total.serialize()
    sampler = VitalsSampler("worker")
    sampler.sample()
    vitals = sampler.summary()

    def stats_report(now: float, users: dict) -> dict:
        def moved(e):
            n = e["num_requests"]
            per_s = {int(now) - 2 + i: n // 3 for i in range(3)}
            return dict(e, start_time=now - WORKER_REPORT_INTERVAL, last_request_timestamp=now, num_reqs_per_sec=per_s,
                        num_fail_per_sec={})
        return {"stats": [moved(e) for e in entries], "stats_total": moved(total), "errors": {},
                "user_classes_count": users, "user_count": sum(users.values())}

    class Fake:
        def __init__(self, index: int):
            self.id = f"{socket.gethostname()}_{os.urandom(16).hex()}"
            self.client = zmqrpc.Client("127.0.0.1", port, self.id)
            self.state = STATE_INIT
            self.users: dict = {}
            self.pid = 100000 + index
            self.producer = index + 1
            self.issued = 0
            self.greenlets = [gevent.spawn(self.receive)]
            self.client.send(Message("client_ready", __version__, self.id))

        def send(self, kind, data=None):
            self.client.send(Message(kind, data, self.id))

        def receive(self):
            while True:
                msg = self.client.recv()
                if msg.type == "ack":
                    self.greenlets += [gevent.spawn(self.heartbeat), gevent.spawn(self.stats)]
                    if "hello" in kinds:
                        self.send(HELLO_MESSAGE)
                elif msg.type == "spawn":
                    self.send("spawning")
                    first = self.state != STATE_RUNNING
                    self.state = STATE_SPAWNING
                    self.users = dict(msg.data["user_classes_count"])
                    self.send("spawning_complete", {"user_classes_count": self.users,
                                                    "user_count": sum(self.users.values())})
                    self.state = STATE_RUNNING
                    if first and "vitals" in kinds:  # a queuestorm worker reports when its producer starts
                        self.greenlets.append(gevent.spawn(self.vitals))

        def heartbeat(self):
            while True:
                self.send("heartbeat", {"state": self.state, "current_cpu_usage": 35.0 + random.random() * 10,
                                        "current_memory_usage": 80_000_000 + random.randrange(1_000_000)})
                gevent.sleep(HEARTBEAT_INTERVAL)

        def stats(self):
            gevent.sleep(random.random() * WORKER_REPORT_INTERVAL)  # real workers are out of step with each other
            while True:
                self.send("stats", stats_report(time.time(), self.users))
                gevent.sleep(WORKER_REPORT_INTERVAL)

        def vitals(self):
            while True:
                self.issued += 1000
                counts = {"producer": self.producer, "issued": self.issued, "enqueued": self.issued - 20,
                          "maybe_enqueued": 0, "requests": self.issued, "failures": 0, "dropped": 0,
                          "rate_share": None, "closed": False}
                self.send(REPORT_MESSAGE, {"final": False, "counts": counts,
                                           "vitals": dict(vitals, pid=self.pid, samples=self.issued // 1000)})
                gevent.sleep(REPORT_SECONDS)

    fleet = []
    for i in range(workers):
        fleet.append(Fake(i))
        if i % 50 == 49:
            gevent.sleep(0.05)
    print(f"fakes: {workers} workers connecting", flush=True)
    gevent.sleep(10**9)


# one variant ------------------------------------------------------------------------------------------------------

def get(url: str, timeout: float = 10) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return (time.perf_counter() - started) * 1000, body


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(variant: str, workers: int, seconds: float, workdir: str, profile: str = "") -> dict:
    kinds = "hello" if variant == "queuestorm-novitals" else "hello,vitals"
    from queuestorm.redis.embedded import _free_port

    bind, web = _free_port(), _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = None
    common = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(bind), "--web-host",
              "127.0.0.1", "--web-port", str(web), "--autostart", "--expect-workers", str(workers), "-u", str(workers),
              "-r", str(workers), "--run-time", "3600", "--loglevel", "WARNING"]
    if variant == "plain":
        locustfile = os.path.join(workdir, "plain_locustfile.py")
        with open(locustfile, "w") as f:
            f.write(PLAIN_LOCUSTFILE)
        command = [sys.executable, "-m", "locust", "-f", locustfile, *common]
    else:
        server = RedisServer()
        env["REDIS_URL"] = server.url
        command = [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), *common,
                   "--drain", "external"]
    log = open(os.path.join(workdir, f"{variant}-{workers}-master.log"), "w")
    master = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    fake = None
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 30
        while True:  # the web UI answers once the master (and queuestorm's setup) is up
            try:
                get(base + "/stats/requests", timeout=2)
                break
            except OSError:
                if master.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {variant} master did not start; see {log.name}")
                time.sleep(0.3)
        fake_log = open(os.path.join(workdir, f"{variant}-{workers}-fakes.log"), "w")
        fake = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", "fakes", "--port", str(bind),
                                 "--workers", str(workers), "--queuestorm", str(int(variant != "plain")),
                                 "--kinds", kinds], env=env, stdout=fake_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            doc = json.loads(get(base + "/stats/requests")[1])
            running = sum(1 for w in doc.get("workers", []) if w["state"] == "running")
            if doc["state"] == "running" and doc["user_count"] == workers and running == workers:
                break
            if time.monotonic() > deadline or master.poll() is not None or fake.poll() is not None:
                raise RuntimeError(f"{variant}: {running} of {workers} workers running, master {doc['state']}, "
                                   f"{doc['user_count']} users; see {log.name}")
            time.sleep(0.5)
        time.sleep(SETTLE)
        cpu0, fake0, t0 = process_cpu_seconds(master.pid), process_cpu_seconds(fake.pid), time.monotonic()
        if profile:  # py-spy's samples stop the master for a moment each: its CPU figure is then not comparable
            subprocess.run(["py-spy", "record", "-p", str(master.pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw",
                            "-o", os.path.join(profile, f"{variant}-{workers}-{os.getpid()}-{int(t0)}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            time.sleep(seconds)
        cpu1, fake1, t1 = process_cpu_seconds(master.pid), process_cpu_seconds(fake.pid), time.monotonic()
        paths = ["/", "/stats/requests"] + (["/queuestorm/stats"] if variant != "plain" else [])
        ms = {p: [] for p in paths}
        for _ in range(PROBES):
            for p in paths:
                elapsed, body = get(base + p)
                ms[p].append(elapsed)
            time.sleep(0.05)
        doc = json.loads(get(base + "/stats/requests")[1])
        check = {"workers_running": sum(1 for w in doc["workers"] if w["state"] == "running"),
                 "users": doc["user_count"]}
        if variant != "plain":
            qs = json.loads(get(base + "/queuestorm/stats")[1])
            check["worker_rows"] = sum(1 for row in qs.get("processes", qs.get("vitals", [])) if row.get("role") ==
                                       "worker")
        return {"cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100, "fake_cpu_pct": (fake1 - fake0) / (t1 - t0) * 100,
                "ms": {p: (median(v), percentile(v, 0.95)) for p, v in ms.items()}, "check": check}
    finally:
        for proc in (fake, master):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()
        if server is not None:
            server.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="500", help="simulated workers, or a list: 100,500")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--py-spy", default="", metavar="DIR",
                        help="record the master with py-spy over each window, collapsed stacks into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the masters' and fakes' logs (printed where)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS + EXTRA_VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    counts = [int(n) for n in args.workers.split(",")]
    workdir = tempfile.mkdtemp(prefix="queuestorm-bench-master-")
    results: dict[int, dict[str, list[dict]]] = {n: {v: [] for v in variants} for n in counts}
    for n in counts:
        for r in range(args.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                res = measure(v, n, args.seconds, workdir, args.py_spy)
                results[n][v].append(res)
                ms = "  ".join(f"{p} {a:.0f}/{b:.0f} ms" for p, (a, b) in res["ms"].items())
                print(f"  N={n} round {r + 1} {v:<19} master CPU {res['cpu_pct']:5.1f} %  (fakes "
                      f"{res['fake_cpu_pct']:.0f} %)  {ms}  {res['check']}", flush=True)
    print(f"\nmedian of {args.rounds} round(s), master CPU over {args.seconds:.0f} s; web ms p50/p95 of {PROBES} "
          f"GETs each after it:")
    print(f"{'N':>5}  {'variant':<19}  {'CPU %':>6}  {'CPU %/worker':>12}  {'GET / ms':>10}  {'/stats/requests':>15}  "
          f"{'/queuestorm/stats':>17}")
    summary = {}
    for n in counts:
        for v in variants:
            rows = results[n][v]
            cpu = median([r["cpu_pct"] for r in rows])
            cell = {p: (median([r["ms"][p][0] for r in rows]), median([r["ms"][p][1] for r in rows]))
                    for p in rows[0]["ms"]}
            summary[(n, v)] = {"cpu_pct": cpu, "ms": cell}

            def fmt(p):
                return f"{cell[p][0]:.0f}/{cell[p][1]:.0f}" if p in cell else "-"
            print(f"{n:>5}  {v:<19}  {cpu:6.1f}  {cpu / n:12.3f}  {fmt('/'):>10}  {fmt('/stats/requests'):>15}  "
                  f"{fmt('/queuestorm/stats'):>17}")
    if "plain" in variants and "queuestorm" in variants:
        print(f"\nqueuestorm / plain, master CPU (per round), goal <= {CPU_GOAL}x and web p95 < {MS_GOAL:.0f} ms:")
        for n in counts:
            for v in variants:
                if v == "plain":
                    continue
                ratios = [q["cpu_pct"] / p["cpu_pct"] for q, p in zip(results[n][v], results[n]["plain"])]
                ratio = median(ratios)
                worst = max(summary[(n, v)]["ms"].values(), key=lambda c: c[1])[1]
                holds = ratio <= CPU_GOAL and worst < MS_GOAL
                line = (f"  N={n:<5} {v:<20} {ratio:5.2f}x  (per round: {', '.join(f'{x:.2f}' for x in ratios)})  "
                        f"slowest p95 {worst:.0f} ms")
                if v == "queuestorm":
                    summary[n] = {"ratio": ratio, "worst_p95_ms": worst, "holds": holds}
                    line += f"  goal {'holds' if holds else 'does NOT hold'}"
                print(line)
    if args.keep:
        print(f"logs in {workdir}")
    else:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child = argparse.ArgumentParser()
        child.add_argument("--child")
        child.add_argument("--port", type=int)
        child.add_argument("--workers", type=int)
        child.add_argument("--queuestorm", type=int)
        child.add_argument("--kinds")
        a = child.parse_args()
        fakes(a.port, a.workers, bool(a.queuestorm), a.kinds)
    else:
        main()
