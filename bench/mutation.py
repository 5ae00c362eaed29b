"""Mutation campaign over queuestorm's core (issue 19): how many deliberate small bugs the fast tests catch.

    python bench/mutation.py            # every module below; prints killed/total and the survivors
    python bench/mutation.py verdict    # only the modules whose path contains "verdict"

mutmut runs in a copy of the working tree (under bench/.mutation/, never in the checkout itself), configured here;
the figure and the survivors land in bench/.mutation/result.json as well.
"""

import os  # noqa: E402

# The one place to edit when the package's layout changes: each module mutated, with the functions in it that
# are (None: all of it), and the tests that must catch a change in them.
MODULES = {
    "queuestorm/verdict.py": None,
    "queuestorm/thresholds.py": None,
    "queuestorm/connection.py": ["redact", "_secrets_of", "scrub"],
    "queuestorm/check.py": None,
    "queuestorm/ledger.py": None,
}
# The drain's record/ack path (queuestorm/drain.py, DrainWorker._record) is proven by tests that run the drain as a
# process (tests/test_promises.py); mutmut sees no test call into a subprocess, so it would report every mutant
# there as "no tests": it is left out of the campaign.
TESTS = ["tests/test_promises.py", "tests/test_thresholds.py", "tests/test_check.py", "tests/test_checker_model.py", "tests/test_ledger.py",
         "tests/test_connection.py", "tests/test_secrets.py"]
PYTEST_ARGS = ["-n", "0", "-p", "no:cacheprovider", "-x", "-q",
               "-k", "not locust_run and not ledger_meta and not test_secrets_never_leak"]
MODEL_EXAMPLES = "6"  # the model test's examples per protocol, per mutant (the suite's own run uses more)
# mutants run at once: 1 by default (a shared 2-core machine); QS_MUTATION_CHILDREN sets it
CHILDREN = os.environ.get("QS_MUTATION_CHILDREN", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".mutation"


def toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(item)) for item in items) + "]"


def prepare(modules: dict) -> None:
    """A fresh copy of the tracked and untracked-not-ignored files, its pyproject naming mutmut's configuration."""
    if WORK.exists():
        shutil.rmtree(WORK)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if name.startswith("bench/.mutation") or not (ROOT / name).is_file():
            continue
        (WORK / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, WORK / name)
    config = (
        "\n[tool.mutmut]\n"
        f'source_paths = ["queuestorm"]\n'
        f"only_mutate = {toml_list(modules)}\n"
        f"also_copy = {toml_list(['tests', 'locustfiles', 'scenarios', 'workers', 'hooks'])}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(TESTS)}\n"
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
    )
    with open(WORK / "pyproject.toml", "a") as f:
        f.write(config)


def mutant_patterns(modules: dict) -> list[str]:
    patterns = []
    for path, functions in modules.items():
        module = path.removesuffix(".py").replace("/", ".")
        patterns += [f"{module}.*"] if functions is None else [f"{module}.{fn}__mutmut_*" for fn in functions]
    return patterns


def results() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=WORK,
                         capture_output=True, text=True).stdout
    statuses = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def main(argv: list[str]) -> int:
    modules = {path: fns for path, fns in MODULES.items() if not argv or any(a in path for a in argv)}
    prepare(modules)
    # mutmut's own warnings would reach the stderr of the CLIs the tests run, which tests read line by line
    env = {**os.environ, "QS_MODEL_EXAMPLES": MODEL_EXAMPLES, "PYTHONWARNINGS": "ignore"}
    env.pop("PYTEST_ADDOPTS", None)
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", CHILDREN, *mutant_patterns(modules)], cwd=WORK, env=env)
    statuses = {name: status for name, status in results().items()
                if any(name.startswith(p.rstrip("*").rstrip("_").removesuffix("__mutmut"))
                       for p in mutant_patterns(modules))}
    killed = sum(status == "killed" for status in statuses.values())
    survivors = sorted(name for name, status in statuses.items() if status != "killed")
    summary = {"killed": killed, "total": len(statuses), "modules": list(modules),
               "survivors": {name: statuses[name] for name in survivors}}
    (WORK / "result.json").write_text(json.dumps(summary, indent=2))
    print(f"mutation: {killed}/{len(statuses)} killed "
          f"({100 * killed / max(len(statuses), 1):.1f} %) over {', '.join(modules)}")
    for name in survivors:
        print(f"  {statuses[name]:>10}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
