"""A run from start to verdict: its config, scenario, thresholds, phases, capacity search."""

from .._compat import forward

__getattr__ = forward(__name__, "session")  # the names of the old `queuestorm.run` module
