"""The deployment files parse and are wired together: docker-compose, the Kubernetes manifests, Heroku's."""

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error

import pytest
import yaml

from helpers import ROOT, free_port

LOCUSTFILE = "locustfiles/enqueue.py"


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose():
    return load("docker-compose.yml")


def env_of(service) -> dict:
    return service.get("environment") or {}


def default_of(value: str) -> str:
    """`${VAR:-default}` -> default, as compose interpolates it when VAR is unset."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match.group(1) if match else value


def test_compose_has_redis_a_master_with_the_web_ui_and_scalable_workers_and_drains(compose):
    services = compose["services"]
    assert set(services) == {"redis", "master", "worker", "drain"}
    master, worker, drain = services["master"], services["worker"], services["drain"]
    assert master["command"][:3] == ["locust", "-f", LOCUSTFILE] and "--master" in master["command"]
    assert "8089:8089" in master["ports"]
    assert env_of(master)["QS_DRAIN"] == "external"  # the drain service does the draining
    assert default_of(env_of(master)["LOCUST_EXPECT_WORKERS"]) == str(worker["deploy"]["replicas"])
    assert "--autostart" in master["command"] and "--autoquit" in master["command"]  # `up` runs it end to end
    # workers find the master by its service name
    command = worker["command"]
    assert command[:3] == ["locust", "-f", LOCUSTFILE] and "--worker" in command
    assert command[command.index("--master-host") + 1] == "master"
    assert drain["command"][:2] == ["queuestorm", "drain"]
    for name in ("worker", "drain"):  # --scale N needs neither fixed names nor host ports
        assert "container_name" not in services[name] and "ports" not in services[name]
    # every role talks to the same Redis, the compose one unless REDIS_URL says otherwise
    urls = {default_of(env_of(services[name])["REDIS_URL"]) for name in ("master", "worker", "drain")}
    assert urls == {"redis://redis:6379/0"}
    assert master["depends_on"]["redis"]["condition"] == "service_healthy" and "healthcheck" in services["redis"]
    images = {services[name]["image"] for name in ("master", "worker", "drain")}
    assert len(images) == 1 and all(services[name]["build"] == "." for name in ("master", "worker", "drain"))


def test_compose_variables_set_in_the_shell_reach_the_services_and_locust(compose, monkeypatch):
    """Every `${VAR:-default}` of the compose file, VAR set to something else, interpolates to it (as compose does);
    QS_WORKERS=4 becomes the master's LOCUST_EXPECT_WORKERS, which Locust reads as --expect-workers 4."""
    from locust.argument_parser import get_parser

    shell = {}
    for service in compose["services"].values():
        for value in env_of(service).values():
            match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value or ""))
            if match:
                shell[match.group(1)] = f"not-{match.group(2)}" if match.group(1) != "QS_WORKERS" else "4"
    assert {"QS_WORKERS", "QS_PROTOCOL", "QS_QUEUE", "QS_DRAIN_CONCURRENCY", "REDIS_URL"} <= shell.keys()

    def interpolated(value):
        match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value or ""))
        return shell.get(match.group(1)) or match.group(2) if match else value
    for name, service in compose["services"].items():
        for key, value in env_of(service).items():
            match = re.fullmatch(r"\$\{(\w+):-(.*)\}", str(value or ""))
            if match:
                assert interpolated(value) == shell[match.group(1)] != match.group(2), (name, key)
    master_env = {key: interpolated(value) for key, value in env_of(compose["services"]["master"]).items()}
    assert master_env["LOCUST_EXPECT_WORKERS"] == "4"
    monkeypatch.setenv("LOCUST_EXPECT_WORKERS", master_env["LOCUST_EXPECT_WORKERS"])
    assert get_parser().parse_known_args(["-f", LOCUSTFILE])[0].expect_workers == 4


def test_dockerfile_installs_the_package_and_ships_every_entry_point_and_scenario():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^ARG BASE=python:3\.\d+", text, re.M) and re.search(r"^FROM \$\{BASE\}", text, re.M)
    assert "pip install" in text
    for path in ("queuestorm", "locustfiles", "workers", "scenarios", "pyproject.toml"):
        assert re.search(rf"^COPY .*{path}", text, re.M), path
        assert os.path.exists(os.path.join(ROOT, path))
    assert "8089" in text and "5557" in text
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        assert not {"scenarios", "workers", "locustfiles"} & set(f.read().split())


def compose_tool() -> list[str] | None:
    """The compose command installed here: the docker plugin, else the standalone docker-compose (.ci/image-check
    installs Debian's); neither needs a running daemon to check a file."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(compose_tool() is None, reason="neither docker compose nor docker-compose is installed")
def test_docker_compose_config_accepts_the_file():
    result = subprocess.run([*compose_tool(), "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def compose_environment(service) -> dict[str, str]:
    """A service's environment as compose gives it when none of its variables is set in the shell: `${VAR:-x}` is x,
    a variable with no value is not passed at all."""
    return {name: default_of(str(value)) for name, value in env_of(service).items() if value is not None}


def as_local_command(argv: list[str]) -> list[str]:
    """A container's command line run here: the image's `locust` and `queuestorm` are this Python's."""
    program = {"locust": "locust", "queuestorm": "queuestorm"}[argv[0]]
    return [sys.executable, "-m", program, *argv[1:]]


def on_this_machine(env: dict[str, str], redis_url: str, queue: str, ports: dict[str, int]) -> dict[str, str]:
    """A role's environment with the cluster's addresses replaced by this machine's: the test's redis-server, a
    queue of its own, free ports (tests run in parallel), the image's /app as the repository."""
    env = {name: value.replace("/app/", ROOT + "/") for name, value in env.items()}
    env.update(REDIS_URL=redis_url, QS_QUEUE=queue, LOCUST_WEB_HOST="127.0.0.1", LOCUST_WEB_PORT=str(ports["web"]),
               LOCUST_MASTER_BIND_PORT=str(ports["master"]), LOCUST_MASTER_NODE_PORT=str(ports["master"]))
    return env


def worker_command(argv: list[str], port: int) -> list[str]:
    argv = list(argv)
    argv[argv.index("--master-host") + 1] = "127.0.0.1"
    if "--master-port" in argv:
        argv[argv.index("--master-port") + 1] = str(port)
    return as_local_command(argv)


class Deployment:
    """A master, its workers and a drain started from a deploy file's command lines and environments."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []
        self.named: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("QS_", "LOCUST_")) and k != "REDIS_URL"}
        log = open(self.tmp_path / f"{name}-{len(self.processes)}.log", "w")
        proc = subprocess.Popen(argv, cwd=ROOT, env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        self.named[name] = proc
        return proc

    def stop(self) -> str:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return "\n".join(path.read_text()[-2000:] for path in sorted(self.tmp_path.glob("*.log")))


def wait_for_file(path, processes, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        if any(proc.poll() not in (None, 0) for proc in processes):
            break
        time.sleep(0.2)
    return path.exists()


def wait_until_every_worker_enqueues(r, run_id: str, workers: int, processes, timeout=120) -> bool:
    """Each worker's producer registered in the ledger and enqueuing: on a loaded machine a worker may take seconds
    to get the master's configuration, so a test ends the run once this is seen, not after a fixed run-time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(proc.poll() is None for proc in processes):
        count = int(r.get(f"queuestorm:{{{run_id}}}:producers") or 0)
        issued = [int(r.hget(f"queuestorm:{{{run_id}}}:p:{n}", "issued") or 0) for n in range(1, count + 1)]
        if len(issued) == workers and all(n > 20 for n in issued):
            return True
        time.sleep(0.2)
    return False


def test_compose_services_command_lines_run_a_distributed_run_that_passes(compose, tmp_path, r, redis_url, queue,
                                                                          run_id):
    """Each service's command and environment as docker-compose.yml gives them, run as processes against a real
    redis-server: the master waits for the 2 workers, starts the scenario on its own, the drain service drains;
    stopped as `docker compose stop` stops it (SIGTERM), the master checks and the verdict lands where compose
    mounts ./reports."""
    services = compose["services"]
    ports = {"web": free_port(), "master": free_port()}
    report = tmp_path / "verdict.json"
    user_shell = {"LOCUST_USERS": "4", "LOCUST_SPAWN_RATE": "4", "QS_RATE": "200", "QS_RUN_ID": run_id}
    workers = services["worker"]["deploy"]["replicas"]
    deployment = Deployment(tmp_path)
    try:
        for name in ("drain", "master", *["worker"] * workers):
            env = on_this_machine(compose_environment(services[name]), redis_url, queue, ports)
            if name == "master":
                env.update(user_shell, QS_REPORT=str(report))
                assert env["QS_SCENARIO"] == f"{ROOT}/scenarios/steady.yaml"
            argv = services[name]["command"]
            deployment.start(name, worker_command(argv, ports["master"]) if name == "worker" else
                             as_local_command(argv), env)
        assert wait_until_every_worker_enqueues(r, run_id, workers, deployment.processes), deployment.stop()
        deployment.named["master"].send_signal(signal.SIGTERM)
        finished = wait_for_file(report, deployment.processes)
    finally:
        output = deployment.stop()
    assert finished, output
    verdict = json.loads(report.read_text())
    assert verdict["verdict"] == "pass" and verdict["enqueued"] > 0 and verdict["lost"] == 0, output
    assert len(verdict["workers"]) == 2


@pytest.fixture(scope="module")
def manifests():
    docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml"))):
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] != "Kustomization"}


def containers(deployment):
    return deployment["spec"]["template"]["spec"]["containers"]


def test_kubernetes_manifests_have_the_expected_kinds(manifests):
    assert {("ConfigMap", "queuestorm-config"), ("Deployment", "queuestorm-master"),
            ("Service", "queuestorm-master"), ("Deployment", "queuestorm-worker"),
            ("Deployment", "queuestorm-drain")} <= set(manifests)
    for (kind, _), doc in manifests.items():
        assert doc["apiVersion"] == {"Deployment": "apps/v1"}.get(kind, "v1")


def test_kubernetes_references_resolve(manifests):
    deployments = {name: d for (kind, name), d in manifests.items() if kind == "Deployment"}
    services = {name: d for (kind, name), d in manifests.items() if kind == "Service"}
    config_maps = {name for kind, name in manifests if kind == "ConfigMap"}
    for name, d in deployments.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for c in containers(d):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
        for volume in d["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                config_map = manifests[("ConfigMap", volume["configMap"]["name"])]
                assert all(item["key"] in config_map["data"] for item in volume["configMap"]["items"])
    for name, svc in services.items():  # each Service selects a Deployment's pods, on ports its container names
        targets = [d for d in deployments.values()
                   if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, name
        port_names = {p["name"] for c in containers(targets[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    master_args = containers(deployments["queuestorm-master"])[0]["args"]
    assert master_args[:3] == ["locust", "-f", LOCUSTFILE] and "--master" in master_args
    assert {p["port"] for p in services["queuestorm-master"]["spec"]["ports"]} == {8089, 5557}
    worker_args = containers(deployments["queuestorm-worker"])[0]["args"]
    assert "--worker" in worker_args and worker_args[worker_args.index("--master-host") + 1] in services
    assert containers(deployments["queuestorm-drain"])[0]["args"][:2] == ["queuestorm", "drain"]
    data = manifests[("ConfigMap", "queuestorm-config")]["data"]
    assert data["QS_DRAIN"] == "external" and data["REDIS_URL"].startswith("redis")
    assert all(isinstance(v, str) for v in data.values())  # ConfigMap values must be strings
    kustomization = load("deploy/k8s/kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "deploy", "k8s", "*.yaml"))
        if not p.endswith("kustomization.yaml"))


def test_heroku_procfile_and_app_json_agree():
    with open(os.path.join(ROOT, "Procfile")) as f:
        processes = dict(line.split(":", 1) for line in f.read().splitlines() if line.strip())
    assert set(processes) == {"web", "worker", "drain"}
    web, worker, drain = (shlex.split(processes[k]) for k in ("web", "worker", "drain"))
    assert "--master" in web and "$PORT" in web
    assert "--worker" in worker and worker[worker.index("--master-host") + 1] == "$QS_MASTER_HOST"
    assert drain[:2] == ["queuestorm", "drain"]
    with open(os.path.join(ROOT, "app.json")) as f:
        app = json.load(f)
    assert set(app["formation"]) == set(processes)
    assert "QS_MASTER_HOST" in app["env"]


@pytest.mark.parametrize("qs_redis_url", ["rediss://:pw@tls-host:6380/0?ssl_cert_reqs=none", ""])
def test_the_procfile_prefers_qs_redis_url_over_redis_url(qs_redis_url):
    """Heroku runs each line through a shell: QS_REDIS_URL, when set, is the --redis-url of every process; unset,
    the add-on's REDIS_URL is; QS_MASTER_HOST is the worker's --master-host."""
    with open(os.path.join(ROOT, "Procfile")) as f:
        processes = dict(line.split(":", 1) for line in f.read().splitlines() if line.strip())
    env = {"PATH": os.environ["PATH"], "REDIS_URL": "redis://h:pw@addon:7000", "PORT": "5000",
           "QS_MASTER_HOST": "web.1.internal"}
    if qs_redis_url:
        env["QS_REDIS_URL"] = qs_redis_url
    for name, line in processes.items():
        argv = subprocess.run(["sh", "-c", f"printf '%s\\n' {line.strip()}"], env=env, capture_output=True,
                              text=True, check=True).stdout.splitlines()
        assert argv[argv.index("--redis-url") + 1] == (qs_redis_url or "redis://h:pw@addon:7000"), name
        if name == "worker":
            assert argv[argv.index("--master-host") + 1] == "web.1.internal"
        if name == "web":
            assert argv[argv.index("--web-port") + 1] == "5000"


def known_environment_variables() -> set[str]:
    """Every variable an option reads: Locust's and queuestorm's (env_var=), and the queuestorm commands' ([NAME] in
    their help, read with settings.env)."""
    from locust.argument_parser import get_parser

    import queuestorm.plugin  # noqa: F401  (registers queuestorm's options)
    from queuestorm.cli import parser

    names = {action.env_var for action in get_parser()._actions if getattr(action, "env_var", None)}
    return names | set(re.findall(r"\b(?:QS|REDIS)_[A-Z_]+", parser().format_help() + subcommand_help(parser())))


def subcommand_help(parser) -> str:
    import argparse

    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return "".join(p.format_help() for a in subparsers for p in a.choices.values())


def test_the_configmap_sets_only_variables_that_options_read_and_carries_the_repositorys_scenario(manifests,
                                                                                                  tmp_path):
    from queuestorm.scenario import Scenario

    data = manifests[("ConfigMap", "queuestorm-config")]["data"]
    variables = {name for name in data if name.isupper()}
    assert variables - known_environment_variables() == set()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(data["scenario.yaml"])
    loaded = Scenario(str(scenario))  # the loader accepts it: the mistakes of an older format exit 2 here
    assert loaded.users == ["EnqueueUser"] and loaded.option_values()
    assert yaml.safe_load(data["scenario.yaml"]) == load("scenarios/steady.yaml")


def test_every_pod_that_reads_the_scenario_mounts_it_where_qs_scenario_says(manifests):
    data = manifests[("ConfigMap", "queuestorm-config")]["data"]
    for name in ("queuestorm-master", "queuestorm-worker"):
        spec = manifests[("Deployment", name)]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounted = {os.path.join(m["mountPath"], item["path"]): item["key"]
                   for c in spec["containers"] for m in c.get("volumeMounts", [])
                   for item in volumes[m["name"]]["configMap"]["items"]}
        assert mounted.get(data["QS_SCENARIO"]) == "scenario.yaml", name


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_kubectl_kustomize_builds_every_object_of_the_files(manifests):
    result = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "deploy", "k8s")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == set(manifests)
    for d in built:
        assert d["apiVersion"] and d["metadata"]["labels"]["app.kubernetes.io/name"] == "queuestorm"
        if d["kind"] == "Deployment":
            for c in containers(d):
                assert c["name"] and c["image"] and c["args"], d["metadata"]["name"]


def start_form_run(base: str, users: int, run_time: str) -> None:
    import urllib.request

    form = f"user_count={users}&spawn_rate={users}&host=&run_time={run_time}".encode()
    with urllib.request.urlopen(base + "/swarm", data=form, timeout=10) as response:
        assert json.load(response)["success"]


def stop_form_run(base: str) -> None:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(base + "/stop", method="POST"), timeout=10) as response:
        assert json.load(response)["success"]


def get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for_json(url: str, until, processes, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(proc.poll() is None for proc in processes):
        try:
            doc = get_json(url)
            if until(doc):
                return doc
        except urllib.error.HTTPError:
            raise  # the server answered, with an error (a 500): not a server still starting
        except OSError:
            pass  # nothing listens yet
        time.sleep(0.3)
    return None


def test_kubernetes_pods_command_lines_run_the_configmaps_scenario_that_passes(manifests, tmp_path, r, redis_url,
                                                                                queue, run_id):
    """The master, worker and drain containers' args with the ConfigMap's environment (its scenario.yaml as the pods
    mount it), run as processes against a real redis-server; a test started from the web UI, as a user does after
    `kubectl port-forward`, ends with a passing verdict."""
    data = manifests[("ConfigMap", "queuestorm-config")]["data"]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(data["scenario.yaml"])
    config = {name: value for name, value in data.items() if name.isupper()}
    ports = {"web": free_port(), "master": free_port()}
    env = {**on_this_machine(config, redis_url, queue, ports), "QS_SCENARIO": str(scenario)}
    args = {name: containers(manifests[("Deployment", f"queuestorm-{name}")])[0]["args"]
            for name in ("master", "worker", "drain")}
    deployment = Deployment(tmp_path)
    base = f"http://127.0.0.1:{ports['web']}"
    try:
        deployment.start("master", as_local_command(args["master"]), {**env, "QS_RUN_ID": run_id})
        for _ in range(2):
            deployment.start("worker", worker_command(args["worker"], ports["master"]), env)
        deployment.start("drain", as_local_command(args["drain"]), env)
        two_workers = wait_for_json(base + "/stats/requests", lambda d: d.get("workers") and len(d["workers"]) == 2,
                                    deployment.processes)
        assert two_workers, deployment.stop()
        start_form_run(base, users=4, run_time="120s")
        assert wait_until_every_worker_enqueues(r, run_id, 2, deployment.processes), deployment.stop()
        stop_form_run(base)
        final = wait_for_json(base + "/queuestorm/stats", lambda d: d["verdict"] is not None, deployment.processes)
    finally:
        output = deployment.stop()
    assert final, output
    assert final["verdict"]["verdict"] == "pass" and final["verdict"]["enqueued"] > 0, output
