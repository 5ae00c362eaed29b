"""Mutation campaign over queuestorm's core (issue 19): how many deliberate small bugs the fast tests catch.

    python bench/mutation.py            # every module below; prints killed/total and the survivors
    python bench/mutation.py verdict    # only the modules whose path contains "verdict"
    python bench/mutation.py --survivors check   # rerun the last campaign's survivors against the tests as they are

mutmut runs in a copy of the working tree (under bench/.mutation/, never in the checkout itself), configured here;
each module's figure and survivors land in bench/.mutation/result-<module>.json as well. QS_MUTATION_CHILDREN: mutants
run at once (default 1).
"""

import os  # noqa: E402

# The one place to edit when the package's layout changes: each module mutated, with the functions in it that are
# ("Class.method" for a method; None: all of it), and the fast, in-process tests that must catch a change in them.
# mutmut attributes to a function only the tests that call it in the test's own process (a CLI run as a subprocess
# counts for nothing), and each module runs as its own campaign with its own tests, so a mutant runs only those.
CORE_TESTS = ["tests/test_promises.py", "tests/test_thresholds.py", "tests/test_check.py", "tests/test_ledger.py",
              "tests/test_connection.py", "tests/test_secrets.py"]
CORE_SKIP = ["-k", "not locust_run and not ledger_meta and not test_secrets_never_leak"]
CHECKER_TESTS = ["tests/test_check.py", "tests/test_checker_model.py", "tests/test_unfinished.py"]
MODULES = {
    "queuestorm/model/verdict.py": (None, CORE_TESTS, CORE_SKIP),
    "queuestorm/run/thresholds.py": (None, CORE_TESTS, CORE_SKIP),
    "queuestorm/redis/connection.py": (["redact", "_secrets_of", "scrub"], CORE_TESTS, CORE_SKIP),
    "queuestorm/ledger/check.py": (None, CHECKER_TESTS, []),
    "queuestorm/ledger/writer.py": (None, ["tests/test_ledger.py", "tests/test_drain_record.py", *CHECKER_TESTS], []),
    "queuestorm/ledger/reader.py": (None, ["tests/test_ledger.py", *CHECKER_TESTS], []),
    # the drain's record/ack path, proven in this process by tests/test_drain_record.py (tests/test_promises.py
    # proves it of a drain process, which mutmut cannot see)
    "queuestorm/drain/worker.py": (["DrainWorker._record", "DrainWorker._count_completed", "DrainWorker._retry"],
                                   ["tests/test_drain_record.py"], []),
}
PYTEST_ARGS = ["-n", "0", "-p", "no:cacheprovider", "-x", "-q"]
MODEL_EXAMPLES = "3"  # the model test's examples per protocol, per mutant (the suite's own run uses more)
# mutants run at once: 1 by default (a shared 2-core machine); QS_MUTATION_CHILDREN sets it
CHILDREN = os.environ.get("QS_MUTATION_CHILDREN", "1")

import fnmatch  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".mutation"


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(item)) for item in items) + "]"


def prepare(work: Path, path: str, tests: list[str], skip: list[str]) -> None:
    """A fresh copy of the tracked and untracked-not-ignored files, its pyproject naming mutmut's configuration."""
    if work.exists():
        shutil.rmtree(work)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if name.startswith("bench/.mutation") or not (ROOT / name).is_file():
            continue
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    config = (
        "\n[tool.mutmut]\n"
        f'source_paths = ["queuestorm"]\n'
        f"only_mutate = {toml_list([path])}\n"
        f"also_copy = {toml_list(['tests', 'locustfiles', 'scenarios', 'workers', 'hooks'])}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS + skip)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
    )
    with open(work / "pyproject.toml", "a") as f:
        f.write(config)


def mangled(name: str) -> str:
    """mutmut's name for a function ("x_" + name) or a method ("xǁClassǁmethod")."""
    cls, _, method = name.rpartition(".")
    return f"xǁ{cls}ǁ{method}" if cls else f"x_{name}"


def mutant_patterns(path: str, functions) -> list[str]:
    module = path.removesuffix(".py").replace("/", ".")
    return [f"{module}.*"] if functions is None else [f"{module}.{mangled(fn)}__mutmut_*" for fn in functions]


def results(work: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                         capture_output=True, text=True).stdout
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def refresh_tests(work: Path) -> None:
    """The checkout's tests copied over a finished campaign's, for a rerun of its survivors."""
    for name in subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "tests"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split():
        for copy in (work / name, work / "mutants" / name):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy)


def campaign(path: str, functions, tests: list[str], skip: list[str], survivors_only: bool = False) -> dict:
    work = WORK / Path(path).stem
    patterns = mutant_patterns(path, functions)
    if survivors_only and (work / "mutants").is_dir():
        refresh_tests(work)
        patterns = [name for name, status in results(work).items() if status not in ("killed", "timeout")
                    and any(fnmatch.fnmatch(name, pattern) for pattern in patterns)] or patterns
    else:
        prepare(work, path, tests, skip)
    # mutmut's own warnings would reach the stderr of the CLIs the tests run, which tests read line by line
    env = {**os.environ, "QS_MODEL_EXAMPLES": MODEL_EXAMPLES, "PYTHONWARNINGS": "ignore"}
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", CHILDREN, *patterns], cwd=work, env=env)
    patterns = mutant_patterns(path, functions)
    statuses = {name: status for name, status in results(work).items()
                if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}
    killed = sum(status == "killed" for status in statuses.values())
    return {"module": path, "functions": functions, "tests": tests, "killed": killed, "total": len(statuses),
            "seconds": round(time.monotonic() - started),
            "survivors": {name: status for name, status in sorted(statuses.items()) if status != "killed"}}


def main(argv: list[str]) -> int:
    survivors_only = "--survivors" in argv
    argv = [a for a in argv if a != "--survivors"]
    chosen = {path: spec for path, spec in MODULES.items() if not argv or any(a in path for a in argv)}
    WORK.mkdir(parents=True, exist_ok=True)
    summaries = []
    for path, (functions, tests, skip) in chosen.items():
        summaries.append(campaign(path, functions, tests, skip, survivors_only))
        (WORK / f"result-{Path(path).stem}.json").write_text(json.dumps(summaries[-1], indent=2))
    for s in summaries:
        print(f"mutation: {s['killed']}/{s['total']} killed ({100 * s['killed'] / max(s['total'], 1):.1f} %) "
              f"in {s['module']}, {s['seconds']} s")
        for name, status in s["survivors"].items():
            print(f"  {status:>10}  {name}")
    killed, total = sum(s["killed"] for s in summaries), sum(s["total"] for s in summaries)
    print(f"mutation: {killed}/{total} killed ({100 * killed / max(total, 1):.1f} %) over {len(summaries)} module(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
