"""Which scenario file a Locust command line names, read before Locust parses it (a scenario sets the parser's
defaults): --scenario, else QS_SCENARIO, else `scenario = ...` in one of Locust's config files."""

import os

from configargparse import ConfigFileParserException
from locust.argument_parser import DEFAULT_CONFIG_FILES, LocustConfigParser


def scenario_path(argv: list[str]) -> str:
    """The scenario file, with Locust's precedence: --scenario on the command line, else QS_SCENARIO, else
    `scenario = ...` in a Locust config file (read before Locust parses, to set its defaults)."""
    return _option_value(argv, "--scenario") or os.environ.get("QS_SCENARIO", "") or _scenario_in_config_files(argv)


def _option_value(argv: list[str], option: str) -> str:
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return ""


def locust_config_files(argv: list[str]) -> list[str]:
    """Locust's config files that exist, the one whose values win first: --config, then the default files from
    the last to the first (pyproject.toml over locust.conf over ~/.locust.conf)."""
    named = _option_value(argv, "--config")
    candidates = [named] if named else []
    candidates += [os.path.expanduser(path) for path in reversed(DEFAULT_CONFIG_FILES)]
    return [path for path in candidates if os.path.isfile(path)]


def _scenario_in_config_files(argv: list[str]) -> str:
    for path in locust_config_files(argv):
        try:
            with open(path) as f:
                value = LocustConfigParser().parse(f).get("scenario")
        except (OSError, ConfigFileParserException):
            continue  # Locust reports an unreadable config file itself, in its own words
        if value:
            return value
    return ""
