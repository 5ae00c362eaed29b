"""A password never leaves queuestorm in clear: not in a message, a report, the ledger, a client name, the web UI's
page or a child process's command line."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
import redis

from queuestorm.connection import connect, describe_redis_error, redact, scrub
from queuestorm.errors import UsageError
from queuestorm.webui import keep_unchanged_secrets, mask_secrets

from helpers import ROOT, drain_until_empty, enqueue_jobs, free_port, locust, queuestorm, start_redis_server

PASSWORD = "Xq7-very-secret-pw"


@pytest.mark.parametrize("url, shown", [
    ("redis://user:s3cret@host:6380/2", "redis://user:***@host:6380/2"),
    ("redis://:s3cret@host/0", "redis://:***@host/0"),
    ("redis://s3cret@host/0", "redis://***@host/0"),
    ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
    ("rediss://host/0?ssl_cert_reqs=none&username=bob&password=s3cret",
     "rediss://host/0?ssl_cert_reqs=none&username=***&password=***"),
    ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
    ("redis://:s3cret@host:notaport/0", "redis://:***@host:notaport/0"),
    ("redis://:p@ss/word@host/0", "redis://:***@ss/word@host/0"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_redact_covers_every_credential_form_and_never_raises(url, shown):
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


def test_redact_and_scrub_take_anything():
    assert redact(None) == "None" and redact("") == "" and redact("::::@@@") == ":***@"
    assert scrub("port 's3cret' is bad", "redis://:s3cret@h:s3cret/0") == "port '***' is bad"


def test_a_bad_port_is_one_line_without_the_password():
    with pytest.raises(UsageError) as e:
        connect(f"redis://:{PASSWORD}@127.0.0.1:notaport/0")
    assert "notaport" in str(e.value) and PASSWORD not in str(e.value) and "\n" not in str(e.value)
    result = queuestorm("check", "--run-id", "r", "--ledger-url", f"redis://127.0.0.1:1/0?password={PASSWORD}")
    assert result.returncode == 2 and PASSWORD not in result.stderr and "password=***" in result.stderr


def test_describe_redis_error_scrubs_what_the_server_quotes():
    error = redis.ResponseError(f"ERR something about {PASSWORD}")
    line = describe_redis_error(error, f"redis://u:{PASSWORD}@h/0", "ledger Redis")
    assert PASSWORD not in line and line.startswith("ledger Redis at redis://u:***@h/0")


def test_unix_socket_urls_work_for_connect_and_the_drain(queue):
    directory = tempfile.mkdtemp(prefix="qs-sock-")
    path = os.path.join(directory, "redis.sock")
    proc, port, data = start_redis_server("--unixsocket", path, "--unixsocketperm", "700")
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"unix://{path}?db=0"
        assert connect(url).ping()
        enqueue_jobs(redis.Redis(port=port), "list", queue, "unix-run", 5)
        assert drain_until_empty(url, "list", queue)["completed"] == 5
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def test_the_start_form_shows_secrets_redacted_and_keeps_an_unchanged_one():
    url = f"redis://:{PASSWORD}@10.0.0.1:6379/0"
    template = {"extra_options": {"redis_url": {"default_value": url, "is_secret": True},
                                  "ledger_url": {"default_value": "", "is_secret": True}}}
    mask_secrets(template)
    assert PASSWORD not in json.dumps(template)
    shown = template["extra_options"]["redis_url"]["default_value"]
    options = SimpleNamespace(redis_url=url, ledger_url="")
    from werkzeug.datastructures import ImmutableMultiDict

    assert keep_unchanged_secrets(ImmutableMultiDict({"redis_url": shown}), options)["redis_url"] == url
    typed = "redis://other:6379/0"
    assert keep_unchanged_secrets(ImmutableMultiDict({"redis_url": typed}), options)["redis_url"] == typed


@pytest.fixture(scope="module")
def protected():
    proc, port, directory = start_redis_server("--requirepass", PASSWORD)
    yield port
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


def test_the_web_ui_page_never_carries_the_password(protected, queue):
    web_port = free_port()
    env = dict(os.environ, REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{protected}/0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), "--web-host",
         "127.0.0.1", "--web-port", str(web_port), "--queue", queue, "--drain", "off"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        page, deadline = None, time.monotonic() + 60
        while page is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5).read().decode()
            except urllib.error.HTTPError:
                raise  # the web UI answered, with an error: not one still starting
            except OSError:
                time.sleep(0.2)
        assert page is not None, proc.communicate(timeout=10)[0][-2000:]
        assert PASSWORD not in page
        args = json.loads(page.split("templateArgs = ", 1)[1].split("\n", 1)[0].rstrip(";"))
        assert args["extra_options"]["redis_url"]["default_value"] == f"redis://:***@127.0.0.1:{protected}/0"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert PASSWORD not in output


def process_tree_args(root: int) -> str:
    """`ps` of one process and its descendants (other tests run beside this one, some with URLs in their argv)."""
    rows = [line.split(None, 2) for line in
            subprocess.run(["ps", "-eww", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout.splitlines()]
    tree, grew = {root}, True
    while grew:
        grew = False
        for row in rows:
            if len(row) == 3 and int(row[1]) in tree and int(row[0]) not in tree:
                tree.add(int(row[0]))
                grew = True
    return "\n".join(row[2] for row in rows if len(row) == 3 and int(row[0]) in tree)


def test_a_whole_run_and_its_check_never_show_the_password(protected, tmp_path, queue):
    """Locust with an inline drain, --report, --html and --csv against a password-protected server, then `queuestorm
    check` with the password as a query parameter: every artefact, every output, the ledger, the client names and
    `ps` taken while the drain runs are searched for the password."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected}/0"
    run_id = f"secret-{os.getpid()}"
    env = {"REDIS_URL": url}
    ps_seen, client_names = [], set()
    admin = redis.Redis(port=protected, password=PASSWORD)
    full_env = dict(os.environ, **env)
    for name in ("QS_LEDGER_URL", "QS_RUN_ID", "QS_REPORT"):
        full_env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", os.path.join(ROOT, "locustfiles", "enqueue.py"), "--headless",
         "--only-summary", "--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--rate", "50", "--queue", queue,
         "--run-id", run_id, "--report", str(tmp_path / "verdict.json"), "--html", str(tmp_path / "report.html"),
         "--csv", str(tmp_path / "stats")],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    drain_seen = False
    deadline = time.monotonic() + 120
    while proc.poll() is None:  # sampled for as long as the run lasts
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the 3 s run did not end within 120 s")
        listing = process_tree_args(proc.pid)
        ps_seen.append(listing)
        drain_seen = drain_seen or "queuestorm drain" in listing
        client_names |= {c.get("name", "") for c in admin.client_list()}
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert drain_seen, "the inline drain was never seen running"
    check = queuestorm("check", "--run-id", run_id, "--ledger-url",
                       f"redis://127.0.0.1:{protected}/0?password={PASSWORD}", "--json", str(tmp_path / "check.json"))
    assert check.returncode == 0, check.stderr
    artefacts = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert {"verdict.json", "report.html", "check.json", "stats_stats.csv"} <= artefacts.keys()
    ledger = {key: admin.dump(key) or b"" for key in admin.scan_iter(match=f"queuestorm:{{{run_id}}}:*")}
    assert ledger
    places = {**{f"file {name}": data for name, data in artefacts.items()},
              **{f"ledger key {key!r}": key + value for key, value in ledger.items()},
              "locust stdout": stdout.encode(), "locust stderr": stderr.encode(),
              "check output": (check.stdout + check.stderr).encode(), "client names": repr(client_names).encode(),
              "ps": "".join(ps_seen).encode()}
    leaks = [where for where, data in places.items() if PASSWORD.encode() in data]
    assert not leaks, leaks
    assert any(name.startswith("queuestorm-load:" + run_id) for name in client_names), client_names


def test_a_multi_process_drain_hands_its_urls_to_its_children_through_the_environment(protected, queue):
    url = f"redis://:{PASSWORD}@127.0.0.1:{protected}/0"
    proc = subprocess.Popen([sys.executable, "-m", "queuestorm", "drain", "--processes", "2", "--queue", queue],
                            env=dict(os.environ, REDIS_URL=url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children, deadline = [], time.monotonic() + 20
        while len(children) < 2 and time.monotonic() < deadline:
            listing = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
            children = [line for line in listing.splitlines() if "queuestorm drain" in line and "--processes 1" in line
                        and queue in line]
        assert len(children) == 2 and not any(PASSWORD in line for line in children), children
        admin = redis.Redis(port=protected, password=PASSWORD)
        while len([c for c in admin.client_list() if c.get("name") == "queuestorm-drain"]) < 2 * 10:
            assert time.monotonic() < deadline, "the children never connected"
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(20)
