"""Wrong invocations as a careful user makes them, by class: each must end in one line on stderr, exit 2, no
traceback, the password as ***. Prints a table (class, cases, as promised) and every case that was not.

    python bench/user_mistakes.py            # starts its own redis-server on a free port
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers import start_redis_server  # noqa: E402
from queuestorm.protocols import PROTOCOLS  # noqa: E402

SECRET = "s3cr3t-pw"
LOCUSTFILE = os.path.join(ROOT, "locustfiles", "enqueue.py")
WRONG_TYPE = "qs-probe"  # every protocol's first declared key for this queue holds a value of another type


def cases(url: str, tmp: str) -> list[tuple[str, list[str], dict]]:
    bad_port = f"redis://:{SECRET}@127.0.0.1:notaport/0"
    unreachable = f"redis://:{SECRET}@127.0.0.1:1/0"
    query = f"redis://127.0.0.1:1/0?password={SECRET}"
    empty = os.path.join(tmp, "empty.yaml")
    open(empty, "w").close()
    qs = [sys.executable, "-m", "queuestorm"]
    lc = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--run-time", "1s", "--users", "1"]
    out = [
        ("URL", qs + ["check", "--run-id", "r1"], {"REDIS_URL": bad_port}),
        ("URL", qs + ["drain", "--until-empty"], {"REDIS_URL": unreachable}),
        ("URL", qs + ["clean", "--run-id", "r1"], {"REDIS_URL": query}),
        ("URL", qs + ["errors"], {"REDIS_URL": "http://127.0.0.1:1/"}),
        ("URL", qs + ["check", "--run-id", "r1"], {"REDIS_URL": "unix:///nonexistent/redis.sock"}),
        ("URL", lc, {"REDIS_URL": bad_port}),
        ("URL", lc, {"REDIS_URL": query}),
        ("URL", lc + ["--ledger-url", unreachable], {"REDIS_URL": url}),
    ]
    for option in ("--rate", "--payload-kb", "--grace", "--work-ms", "--drain-concurrency", "--max-error-ratio"):
        for value in ("inf", "nan", "-1", "1e300"):
            out.append(("number", lc + [option, value], {"REDIS_URL": url}))
    for args in (["drain", "--concurrency", "0"], ["drain", "--work-ms", "nan"], ["drain", "--batch", "-1"],
                 ["fault", "pause", "--duration", "inf", "--run-id", "r1"], ["errors", "--limit", "-1"],
                 ["check", "--run-id", "r1", "--max-lost", "-3"]):
        out.append(("number", qs + args, {"REDIS_URL": url}))
    for protocol in PROTOCOLS:
        out.append(("key type", lc + ["--protocol", protocol, "--queue", WRONG_TYPE], {"REDIS_URL": url}))
    a_file = os.path.join(tmp, "a-file")
    open(a_file, "w").close()
    for option, name in (("--report", "v.json"), ("--html", "r.html"), ("--csv", "stats"), ("--plot", "p.png")):
        out.append(("output path", lc + [option, os.path.join(a_file, name)], {"REDIS_URL": url}))
    out.append(("faults file", lc + ["--faults", empty], {"REDIS_URL": url}))
    out.append(("faults file", lc + ["--faults", os.path.join(tmp, "missing.yaml")], {"REDIS_URL": url}))
    out.append(("scenario file", lc + ["--scenario", os.path.join(tmp, "missing.yaml")], {"REDIS_URL": url}))
    return out


def as_promised(result: subprocess.CompletedProcess) -> str:
    """'' when one line, exit 2, no traceback, no secret; else what was wrong."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and "/INFO/locust." not in line]
    everything = result.stdout + result.stderr
    if result.returncode != 2:
        return f"exit {result.returncode}"
    if "Traceback" in everything:
        return "traceback"
    if SECRET in everything:
        return "password shown"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr"
    return ""


def main() -> int:
    import redis

    proc, port, _ = start_redis_server()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port)
        for protocol in PROTOCOLS.values():
            key = protocol(queue=WRONG_TYPE).declared_keys()[0]
            client.set(key.key, "not a queue") if key.type != "string" else client.hset(key.key, "f", "v")
        env = {k: v for k, v in os.environ.items() if not k.startswith("QS_") and k != "REDIS_URL"}
        rows: dict[str, list[int]] = {}
        failures = []
        with tempfile.TemporaryDirectory() as tmp:
            for kind, argv, extra in cases(url, tmp):
                result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**env, **extra},
                                        cwd=ROOT)
                why = as_promised(result)
                row = rows.setdefault(kind, [0, 0])
                row[0] += 1
                row[1] += not why
                if why:
                    failures.append(f"  {kind}: {' '.join(argv[2:])} {extra}: {why}\n    "
                                    + "\n    ".join(result.stderr.strip().splitlines()[-3:]))
        print(f"{'class':<14} {'cases':>5} {'as promised':>12}")
        for kind, (total, good) in rows.items():
            print(f"{kind:<14} {total:>5} {good:>12}")
        total = sum(t for t, _ in rows.values())
        good = sum(g for _, g in rows.values())
        print(f"{'all':<14} {total:>5} {good:>12}")
        for line in failures:
            print(line)
        return 0 if good == total else 1
    finally:
        proc.kill()


if __name__ == "__main__":
    sys.exit(main())
