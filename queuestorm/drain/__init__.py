"""The drain: the worker that fetches and completes jobs, the fleet of drain processes, the settle phase."""

from .._compat import forward

__getattr__ = forward(__name__, "worker")  # the names of the old `queuestorm.drain` module
