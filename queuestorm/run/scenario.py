"""Scenario files: the whole definition of one test, applied as defaults of the command-line parser, so that
environment variables and command-line options still override the file.

    users: [EnqueueUser]          # Locust user classes of the locustfile
    options: {users: 50, spawn-rate: 10, run-time: 30s, protocol: reliable, rate: 500}
    faults: [...]                 # see faults/kinds.py
    thresholds: {max_lost: 0, max_error_ratio: 0.01, latency: {enqueue: {p95: 50}}}
"""

import argparse
import re

import yaml

from ..model.errors import UsageError
from ..faults.kinds import FaultSpec, parse_faults
from .thresholds import THRESHOLD_OPTIONS, latency_option

SECTIONS = ("description", "users", "options", "faults", "thresholds")


def read_yaml(path: str):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise UsageError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None


def load_faults(path: str) -> list[FaultSpec]:
    doc = read_yaml(path)
    items = doc.get("faults") if isinstance(doc, dict) else doc
    if not items:
        raise UsageError(f"{path}: no faults in it (an empty file, or no faults: list)")
    return parse_faults(items, path)


def _lines(path: str) -> dict[tuple[str, ...], int]:
    """Line number of every mapping key, by its path: ("options", "users") -> 12."""
    with open(path) as f:
        root = yaml.compose(f)
    lines: dict[tuple, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[prefix + (str(key.value),)] = key.start_mark.line + 1
                walk(value, prefix + (str(key.value),))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[prefix + (index,)] = item.start_mark.line + 1
                walk(item, prefix + (index,))

    walk(root, ())
    return lines


class Scenario:
    def __init__(self, path: str):
        self.path = path
        doc = read_yaml(path)
        if not isinstance(doc, dict):
            raise UsageError(f"{path}: a scenario is a mapping with {', '.join(SECTIONS)}")
        self._lines = _lines(path)
        for key in doc:
            if key not in SECTIONS:
                raise self.error((key,), f"unknown section (known: {', '.join(SECTIONS)})")
        self.users = doc.get("users") or []
        if not isinstance(self.users, list) or not all(isinstance(u, str) for u in self.users):
            raise self.error(("users",), "must be a list of User class names")
        self.options = doc.get("options") or {}
        if not isinstance(self.options, dict):
            raise self.error(("options",), "must be a mapping of option names to values")
        self.faults = doc.get("faults")
        if self.faults is not None:
            try:
                parse_faults(self.faults, path)
            except UsageError as e:  # "PATH: faults[2].field: ..." -> "PATH:LINE: faults[2].field: ..."
                found = re.match(r"faults\[(\d+)\](?:\.(\w+))?", str(e)[len(path) + 2:])
                index, field = (int(found[1]), found[2]) if found else (None, None)
                line = self._lines.get(("faults", index, field)) or self._lines.get(("faults", index)) \
                    or self._lines.get(("faults",))
                raise UsageError(str(e).replace(f"{path}:", f"{path}:{line}:", 1) if line else str(e)) from None
        self.thresholds = doc.get("thresholds") or {}
        if not isinstance(self.thresholds, dict):
            raise self.error(("thresholds",), "must be a mapping")

    def error(self, key_path: tuple[str, ...], message: str) -> UsageError:
        line = self._lines.get(key_path)
        where = f"{self.path}:{line}" if line else self.path
        return UsageError(f"{where}: {'.'.join(key_path)}: {message}")

    def option_values(self) -> dict[tuple[str, ...], tuple[str, object]]:
        """Every value the scenario sets, as (path in the file) -> (option name, value)."""
        values = {("options", name): (str(name), value) for name, value in self.options.items()}
        for name, value in self.thresholds.items():
            if name == "latency":
                try:
                    value = latency_option(value)
                except (TypeError, ValueError) as e:
                    raise self.error(("thresholds", "latency"), str(e)) from None
                values[("thresholds", name)] = ("latency-limit", value)
            elif name in THRESHOLD_OPTIONS:
                values[("thresholds", name)] = (THRESHOLD_OPTIONS[name], value)
            else:
                known = ", ".join([*THRESHOLD_OPTIONS, "latency"])
                raise self.error(("thresholds", name), f"unknown threshold (known: {known})")
        if self.faults is not None:
            values[("faults",)] = ("faults", self.path)
        return values


def _actions_by_name(parser) -> dict[str, argparse.Action]:
    actions = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                actions[option[2:]] = actions[option[2:].replace("-", "_")] = action
    return actions


def _convert(scenario: Scenario, key_path, action: argparse.Action, value):
    if action.nargs == 0:  # a flag: --headless, --aof
        if not isinstance(value, bool):
            raise scenario.error(key_path, f"must be true or false, got {value!r}")
        return value if action.const is True or action.const is None else not value
    if isinstance(value, (dict, list)) or value is None:
        raise scenario.error(key_path, f"must be a single value, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if action.type else text
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise scenario.error(key_path, f"invalid value {value!r}: {e}") from None
    if action.choices and converted not in action.choices:
        raise scenario.error(key_path, f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def apply_scenario(parser, path: str) -> Scenario:
    """Make the scenario's values the parser's defaults; returns the scenario."""
    scenario = Scenario(path)
    actions = _actions_by_name(parser)
    defaults = {"scenario": path}
    for key_path, (name, value) in scenario.option_values().items():
        action = actions.get(name)
        if action is None or action.dest in ("locustfile", "scenario"):
            raise scenario.error(key_path, "unknown option (any Locust or queuestorm option, without the dashes)")
        defaults[action.dest] = _convert(scenario, key_path, action, value)
    if scenario.users:
        defaults["user_classes"] = scenario.users
    parser.set_defaults(**defaults)
    return scenario
