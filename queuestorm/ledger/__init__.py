"""The run's bookkeeping in Redis: writing it, reading it, checking it, cleaning it up."""

from .._compat import forward

__getattr__ = forward(__name__, "writer")  # the names of the old `queuestorm.ledger` module
