"""Node scripts under tests/node/ (bee-queue, BullMQ, queuestorm's Node hook), run as a user's Node process would be.
Tests that need them skip, saying why, when node or tests/node/node_modules is missing (`npm ci --prefix tests/node`)."""

import os
import shutil
import subprocess
import time

import pytest

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    for package in ("bee-queue", "bullmq", "ioredis", "queuestorm-hook"):
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", package)):
            return f"tests/node/node_modules/{package} is missing: run `npm ci --prefix tests/node`"
    return None


needs_node = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def node_args(script: str, **options) -> list[str]:
    return ["node", os.path.join(NODE_DIR, script), *(f"{key}={value}" for key, value in options.items())]


def run_node(script: str, timeout: float = 120, env: dict | None = None, **options) -> subprocess.CompletedProcess:
    result = subprocess.run(node_args(script, **options), capture_output=True, text=True, timeout=timeout,
                            cwd=NODE_DIR, env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{script}: {result.stderr[-2000:]}"
    return result


def start_node(script: str, env: dict | None = None, **options) -> subprocess.Popen:
    return subprocess.Popen(node_args(script, **options), cwd=NODE_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def wait_for(done, seconds: float = 60, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)
