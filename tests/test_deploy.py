"""The deployment files parse and are wired together: docker-compose, the Kubernetes manifests, Heroku's."""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from helpers import ROOT

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


def test_dockerfile_installs_the_package_and_ships_the_locustfiles():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^FROM python:3\.\d+", text, re.M)
    assert "pip install" in text
    for path in ("queuestorm", "locustfiles", "pyproject.toml"):
        assert re.search(rf"^COPY .*{path}", text, re.M), path
        assert os.path.exists(os.path.join(ROOT, path))
    assert "8089" in text and "5557" in text


@pytest.mark.skipif(not shutil.which("docker"), reason="docker is not installed")
def test_docker_compose_config_accepts_the_file():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(["docker", "compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


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
