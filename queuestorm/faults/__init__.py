"""Faults injected into a run: the kinds, their registry, the schedule."""

from .._compat import forward

__getattr__ = forward(__name__, "kinds")  # the names of the old `queuestorm.faults` module
