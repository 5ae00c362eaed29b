"""Faults injected into a run: the kinds, their registry, the schedule."""

from .._compat import forward
from . import failover, kinds, partitions  # noqa: F401  (FAULTS, the registry, holds every kind once all are imported)

__getattr__ = forward(__name__, "kinds")  # the names of the old `queuestorm.faults` module
