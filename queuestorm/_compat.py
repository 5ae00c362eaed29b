"""The flat layout's module paths, kept working: `queuestorm.plugin`, `queuestorm.users`, `queuestorm.ledger`... are
the modules they moved to (the same objects, so patching one patches the other), and `python -m queuestorm.proxy`
runs the new one. Where an old module's name is now its layer's (`drain`, `ledger`, `faults`, `report`, `run`, `cli`),
the layer's package hands out the old module's names (see `forward`)."""

import importlib
import importlib.abc
import importlib.util
import sys
import types

MOVED = {
    "jobs": "model.jobs",
    "keys": "model.keys",
    "errors": "model.errors",
    "settings": "model.settings",
    "option_types": "model.option_types",
    "verdict": "model.verdict",
    "connection": "redis.connection",
    "wire": "redis.wire",
    "embedded": "redis.embedded",
    "embedded_topology": "redis.embedded_topology",
    "proxy": "redis.proxy",
    "toxics": "redis.toxics",
    "topology": "redis.topology",
    "reachability": "redis.reachability",
    "preflight": "protocols.preflight",
    "check": "ledger.check",
    "cleanup": "ledger.cleanup",
    "recordable": "ledger.recordable",
    "latency": "ledger.latency",
    "drain_reports": "ledger.drain_reports",
    "error_queue": "cli.error_queue",
    "runtime": "produce.runtime",
    "enqueue": "produce.enqueue",
    "pacer": "produce.pacer",
    "timing": "produce.timing",
    "failures": "produce.failures",
    "durable": "produce.durable",
    "generator_lock": "produce.generator_lock",
    "generator_options": "produce.generator_options",
    "drain_fleet": "drain.fleet",
    "settle": "drain.settle",
    "failover": "faults.failover",
    "partitions": "faults.partitions",
    "vitals": "observe.vitals",
    "connections": "observe.connection_sampler",
    "timeline": "observe.timeline",
    "stats_line": "observe.stats_line",
    "html_report": "report.html",
    "plot": "report.plot",
    "capacity_plot": "report.capacity_plot",
    "run_charts": "report.charts",
    "webui": "report.webui",
    "dyno_report": "report.dyno_tables",
    "scenario": "run.scenario",
    "thresholds": "run.thresholds",
    "capacity": "run.capacity",
    "capacity_driver": "run.capacity_driver",
    "output_paths": "run.output_paths",
    "plugin": "locust.plugin",
    "users": "locust.users",
    "generator_users": "locust.generator_users",
    "dyno": "locust.dyno",
    "distributed": "locust.distributed",
    "options": "run.config",
    "fault_cli": "cli.fault",
    "foreign": "cli.foreign",
    "outside": "cli.outside",
    "beequeue_race": "cli.beequeue_race",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("queuestorm.") and fullname[len("queuestorm."):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return types.ModuleType(spec.name)  # replaced by the moved module in exec_module

    def exec_module(self, module) -> None:
        sys.modules[module.__name__] = importlib.import_module(_new_path(module.__name__))

    def get_code(self, fullname):  # `python -m queuestorm.OLD`: runs the moved module as __main__, in its package
        return compile(f"import runpy; runpy.run_module({_new_path(fullname)!r}, run_name='__main__', alter_sys=True)",
                       fullname, "exec")


def _new_path(old: str) -> str:
    return "queuestorm." + MOVED[old[len("queuestorm."):]]


def forward(package: str, module: str):
    """A layer package's module `__getattr__` that hands out the names of the module that had the layer's name
    (never its submodules' names: those the import system finds itself)."""
    def __getattr__(name: str):
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is not None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)
    return __getattr__


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
