"""Every user mistake is one line on stderr, exit 2, never a traceback and never a hang: numbers out of range for
every declared numeric option, Redis refusing commands (ACL users, read-only replicas), keys of another type,
output paths that cannot be written, empty faults files."""

import shutil
import sys
import time

import pytest
import redis
from locust.argument_parser import get_parser

import queuestorm.plugin  # noqa: F401  (registers the options)
from queuestorm import cli
from queuestorm.connection import connect
from queuestorm.errors import UsageError
from queuestorm.faults import parse_faults
from queuestorm.option_types import is_bounded
from queuestorm.output_paths import check_output_paths
from queuestorm.preflight import check_key_types, require_permissions
from queuestorm.protocols import PROTOCOLS, make_protocol
from queuestorm.scenario import apply_scenario, load_faults

from helpers import enqueue_jobs, locust, queuestorm, start_redis_server, wait_until

BAD_NUMBERS = ("inf", "nan", "-1", "1e30")
# what each subcommand needs besides the option under test, so that only the number is wrong
SUBCOMMAND_ARGS = {"drain": [], "check": [], "clean": [], "errors": [], "fault": ["latency"]}


def numeric_options(parser):
    return [action for action in parser._actions if is_bounded(action.type)]


def subcommand_parsers():
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    return sub.choices


def assert_one_line_exit_2(capsys, run):
    with pytest.raises(SystemExit) as exit_info:
        run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_every_numeric_locust_option_refuses_non_finite_negative_and_huge_values(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["locust"])
    options = numeric_options(get_parser())
    assert {"rate", "payload_kb", "drain_concurrency", "grace", "max_error_ratio", "stats_line",
            "generator_interval_ms"} <= {a.dest for a in options}
    for action in options:
        for value in BAD_NUMBERS:
            err = assert_one_line_exit_2(capsys, lambda: get_parser().parse_args([action.option_strings[0], value]))
            assert action.option_strings[0] in err


def test_every_numeric_option_of_every_subcommand_refuses_them(capsys):
    walked = []
    for command, subparser in subcommand_parsers().items():
        for action in numeric_options(subparser):
            for value in BAD_NUMBERS:
                argv = [command, *SUBCOMMAND_ARGS.get(command, []), action.option_strings[0], value]
                err = assert_one_line_exit_2(capsys, lambda: cli.main(argv))
                assert err.startswith(f"queuestorm {command}: error: argument {action.option_strings[0]}"), err
            walked.append(f"{command} {action.option_strings[0]}")
    assert {"drain --concurrency", "drain --block", "check --max-duplicated", "fault --listen-port",
            "fault --maxclients"} <= set(walked)


def test_numbers_from_the_environment_are_bounded_too():
    result = queuestorm("drain", env={"REDIS_URL": "redis://127.0.0.1:1/0", "QS_DRAIN_CONCURRENCY": "inf"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--concurrency" in result.stderr
    result = locust("--run-time", "1s", env={"QS_RATE": "nan"}, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--rate: must be a finite" in result.stderr


def test_scenario_and_faults_files_bound_their_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["locust"])
    path = tmp_path / "s.yaml"
    for text, message in (("options:\n  rate: .inf\n", "s.yaml:2: options.rate: invalid value"),
                          ("options:\n  drain-processes: 0\n", "must be at least 1"),
                          ("faults:\n  - {kind: kill-drain, at: .nan}\n", "faults[0].at: must be a finite number"),
                          ("faults:\n  - {kind: maxclients, duration: 1, maxclients: -1}\n", "must be at least 1")):
        path.write_text(text)
        with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
            apply_scenario(get_parser(), str(path))
    with pytest.raises(UsageError, match="faults.1..count: must be at most 1000"):
        parse_faults([{"kind": "pause", "duration": 1}, {"kind": "kill-drain", "count": 1e30}], "f.yaml")


def test_an_empty_faults_file_says_so(tmp_path):
    path = tmp_path / "faults.yaml"
    for text in ("", "faults: []\n", "description: nothing\n"):
        path.write_text(text)
        with pytest.raises(UsageError, match="no faults in it"):
            load_faults(str(path))


def test_output_paths_that_cannot_be_written_are_refused_before_the_load(tmp_path):
    class Options:
        report = str(tmp_path / "missing-dir" / "r.json")
    with pytest.raises(UsageError, match=r"--report .*: cannot write there: no directory"):
        check_output_paths(Options)
    Options.report, Options.html_file = str(tmp_path / "r.json"), str(tmp_path)
    with pytest.raises(UsageError, match=r"--html .*: cannot write there: it is a directory"):
        check_output_paths(Options)
    Options.html_file, Options.csv_prefix, Options.plot = "", str(tmp_path / "stats"), str(tmp_path / "p.png")
    check_output_paths(Options)
    result = queuestorm("check", "--run-id", "r1", "--ledger-url", "redis://127.0.0.1:1/0", "--json",
                        str(tmp_path / "no" / "v.json"))
    assert result.returncode == 2 and "--json" in result.stderr and "cannot write there" in result.stderr


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_declared_key_holding_another_type_is_one_line_naming_it(protocol, r, redis_url, queue):
    declared = make_protocol(protocol, queue).declared_keys()
    assert declared
    for key in declared:
        wrong = make_protocol(protocol, queue)
        if key.type == "string":
            r.rpush(key.key, "x")
        else:
            r.set(key.key, "x")
        try:
            with pytest.raises(UsageError, match=f"key {key.key!r} on .* holds a .*keeps a {key.type} there"):
                check_key_types(r, wrong, redis_url)
        finally:
            r.delete(key.key)
    check_key_types(r, make_protocol(protocol, queue), redis_url)


def test_a_drain_on_a_key_of_another_type_stops_at_once(r, redis_url, queue):
    r.rpush(queue, "x")
    result = queuestorm("drain", "--redis-url", redis_url, "--protocol", "stream", "--queue", queue, timeout=30)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"key '{queue}'" in result.stderr and "holds a list" in result.stderr
    assert r.lrange(queue, 0, -1) == [b"x"]


@pytest.fixture(scope="module")
def acl_server():
    """A server with `reader` (read commands only, any key) and `nobody` (PING only) beside the default user."""
    proc, port, directory = start_redis_server(
        "--user", "reader", "on", ">readpw", "~*", "&*", "+@read", "+ping", "+multi", "+discard", "+client|setname",
        "--user", "nobody", "on", ">nopw", "~*", "+ping", "+client|setname")
    yield port
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def replica():
    """A primary and its read-only replica: (primary port, replica port)."""
    primary, primary_port, primary_dir = start_redis_server()
    proc, port, directory = start_redis_server("--replicaof", "127.0.0.1", str(primary_port))
    yield primary_port, port
    for p, d in ((proc, directory), (primary, primary_dir)):
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def one_line(result, *expected):
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    return result.stderr


def test_noperm_in_drain_check_clean_fault_and_errors_is_one_line_naming_url_and_permission(acl_server, queue):
    reader = f"redis://reader:readpw@127.0.0.1:{acl_server}/0"
    where = f"redis://reader:***@127.0.0.1:{acl_server}/0"
    admin = redis.Redis(port=acl_server)
    enqueue_jobs(admin, "list", queue, "noperm-run", 3)
    started = time.monotonic()
    err = one_line(queuestorm("drain", "--redis-url", reader, "--queue", queue, timeout=30), where, "BRPOP",
                   "refuses commands")
    assert time.monotonic() - started < 20 and "readpw" not in err
    assert admin.llen(queue) == 3  # nothing was taken
    one_line(queuestorm("clean", "--run-id", "noperm-run", "--ledger-url", reader), where, "'del'")
    nobody = f"redis://nobody:nopw@127.0.0.1:{acl_server}/0"
    one_line(queuestorm("check", "--run-id", "noperm-run", "--ledger-url", nobody),
             f"redis://nobody:***@127.0.0.1:{acl_server}/0", "lacks a permission")
    one_line(queuestorm("fault", "maxclients", "--redis-url", reader, "--duration", "1"), where, "config")
    one_line(queuestorm("errors", "--redis-url", reader, "--queue", queue), where, "'rpop'")


def test_noperm_on_the_ledger_alone_stops_the_drain_naming_the_ledger(acl_server, redis_url, queue):
    reader = f"redis://reader:readpw@127.0.0.1:{acl_server}/0"
    one_line(queuestorm("drain", "--redis-url", redis_url, "--ledger-url", reader, "--queue", queue, timeout=30),
             f"ledger Redis at redis://reader:***@127.0.0.1:{acl_server}/0", "BITFIELD")


def test_a_read_only_replica_is_one_line_in_drain_clean_and_errors(replica, queue):
    primary_port, replica_port = replica
    primary, copy = redis.Redis(port=primary_port), redis.Redis(port=replica_port)
    enqueue_jobs(primary, "reliable", queue, "ro-run", 2)
    wait_until(lambda: copy.llen(queue) == 2, "the replica to have the jobs", 20)  # then a clean there deletes keys
    url = f"redis://127.0.0.1:{replica_port}/0"
    one_line(queuestorm("drain", "--redis-url", url, "--protocol", "reliable", "--queue", queue, timeout=30),
             url, "read-only replica", "BLMOVE")
    one_line(queuestorm("clean", "--run-id", "ro-run", "--ledger-url", url), url, "read-only replica")
    one_line(queuestorm("errors", "--redis-url", url, "--error-queue", queue), url, "read-only replica")
    assert primary.llen(queue) == 2


def test_require_permissions_names_the_role_the_protocol_and_every_refused_command(acl_server, replica, queue):
    url = f"redis://reader:readpw@127.0.0.1:{acl_server}/0"
    for name in sorted(PROTOCOLS):
        protocol = make_protocol(name, queue)
        for role in ("enqueue", "drain"):
            with pytest.raises(UsageError, match=f"refuses commands the {name} {role} needs"):
                require_permissions(connect(url), protocol, url, role)
    url = f"redis://127.0.0.1:{replica[1]}/0"
    with pytest.raises(UsageError, match="read-only replica: the stream enqueue writes .XADD."):
        require_permissions(connect(url), make_protocol("stream", queue), url, "enqueue")
    full = f"redis://127.0.0.1:{acl_server}/0"
    require_permissions(connect(full), make_protocol("rq", queue), full, "drain", ledger_url=full)


def test_a_hook_refused_by_the_ledger_raises_one_line_naming_it(acl_server, monkeypatch):
    from queuestorm.hooks import record_completion
    from queuestorm.jobs import JobEncoder

    monkeypatch.setenv("QS_LEDGER_URL", f"redis://reader:readpw@127.0.0.1:{acl_server}/0")
    with pytest.raises(UsageError) as e:
        record_completion(JobEncoder("hook-run", 1, 10).encode(0))
    message = str(e.value)
    assert message.startswith(f"queuestorm hook: ledger Redis at redis://reader:***@127.0.0.1:{acl_server}/0")
    assert "lacks a permission" in message and "\n" not in message and "readpw" not in message
