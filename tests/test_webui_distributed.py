"""The Queue figures on the master of a distributed run: enqueues summed over the workers, every process listed."""

import os
import subprocess
import sys

from helpers import ROOT, free_port
from test_webui import get_json, wait_for

LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")


def test_master_serves_the_fleets_figures(tmp_path, redis_url, queue, run_id):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QS_") and k != "REDIS_URL"}
    env.update(REDIS_URL=redis_url, QS_RUN_ID=run_id, QS_QUEUE=queue)
    master_port, web_port = free_port(), free_port()
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("master", "worker-a", "worker-b")}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--expect-workers", "2", "--autostart",
         "--autoquit", "30", "--users", "4", "--spawn-rate", "4", "--run-time", "4s", "--rate", "100",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port), "--web-host", "127.0.0.1",
         "--web-port", str(web_port)], stdout=logs["master"], stderr=subprocess.STDOUT, env=env, cwd=ROOT)]
    for name in ("worker-a", "worker-b"):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1",
             "--master-port", str(master_port)], stdout=logs[name], stderr=subprocess.STDOUT, env=env, cwd=ROOT))
    base = f"http://127.0.0.1:{web_port}"
    try:
        live = wait_for(lambda: get_json(base + "/queuestorm/stats"),
                        lambda d: {"worker-0", "worker-1"} <= {p.get("name") for p in d["processes"]}
                        and d["latest"]["enqueued"] > 0, timeout=60)
        assert live["run_id"] == run_id
        assert {"master", f"inline-{procs[0].pid}-0"} <= {p.get("name") for p in live["processes"]}
        final = wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: d["verdict"] is not None, timeout=60)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    master_log = (tmp_path / "master.log").read_text()
    assert final["verdict"]["verdict"] == "pass", master_log[-3000:]
    last = final["points"][-1]
    assert last["enqueued"] == final["verdict"]["enqueued"] == final["verdict"]["completed"] == last["completed"]
    assert 250 <= last["enqueued"] <= 600  # --rate 100 for about 4 s, shared by the two workers
