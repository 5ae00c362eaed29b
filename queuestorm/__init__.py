"""queuestorm: Locust load scenarios for Redis-backed job queues, with a ledger that proves no job is lost.

The layers, each importing only those before it: model, redis, protocols, ledger, produce, observe, drain, faults,
report, run, locust, cli (docs/architecture.md)."""

from ._compat import install

__version__ = "0.1.0"

install()
