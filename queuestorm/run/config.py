"""A run's configuration checked whole, and changed by the web UI's start form for each test it starts."""

import argparse

from ..model.errors import UsageError
from ..model.keys import valid_run_id
from ..model.options import DRAIN_MODES, PER_TEST, RunConfig, declared_types
from ..protocols import protocol_class
from ..redis.topology import refuse_cluster_runs
from .thresholds import parse_latency_limits

__all__ = ["RunConfig", "apply_start_form", "validate"]


def validate(config: RunConfig) -> None:
    protocol_class(config.protocol)
    for option, url in (("--redis-url", config.redis_url), ("--ledger-url", config.ledger_url)):
        refuse_cluster_runs(url, option)
    if config.run_id and not valid_run_id(config.run_id):
        raise UsageError(f"--run-id {config.run_id!r} may hold only letters, digits, '.', '_' and '-' (64 at most)")
    if config.drain not in DRAIN_MODES:
        raise UsageError(f"--drain {config.drain!r} is not one of {', '.join(DRAIN_MODES)}")
    types = declared_types()  # the bounds, for a configuration that did not come through a parser
    for name in config.__dataclass_fields__:
        convert, value = types.get(name), getattr(config, name)
        if convert is not None and value is not None and not isinstance(value, bool):
            try:
                convert(value)
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
    try:
        parse_latency_limits(config.latency_limit)
    except ValueError as e:
        raise UsageError(f"--latency-limit: {e}") from None
    if not config.queue:
        raise UsageError("--queue must not be empty")


def apply_start_form(config: RunConfig, options) -> list[str]:
    """Copy into `config` the per-test options as the start form left them; the names that changed."""
    changed = {}
    types = declared_types()
    for name in PER_TEST:
        value = getattr(options, name, getattr(config, name))
        convert = types.get(name) or (_flag if isinstance(getattr(config, name), bool) else str)
        try:
            value = convert(value) if value is not None else None
        except (ValueError, argparse.ArgumentTypeError) as e:
            detail = f"{e}" if isinstance(e, argparse.ArgumentTypeError) else f"not a valid value: {value!r}"
            raise UsageError(f"--{name.replace('_', '-')}: {detail}") from None
        if value != getattr(config, name):
            changed[name] = value
    old = {name: getattr(config, name) for name in changed}
    for name, value in changed.items():
        setattr(config, name, value)
    try:
        validate(config)
    except UsageError:
        for name, value in old.items():
            setattr(config, name, value)
        raise
    return sorted(changed)


def _flag(value) -> bool:
    return value is True or str(value).lower() in ("true", "on", "1", "yes")
