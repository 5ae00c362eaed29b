"""queuestorm: Locust load scenarios for Redis-backed job queues, with a ledger that proves no job is lost."""

__version__ = "0.1.0"
