"""The `queuestorm` command: one module per subcommand."""

from .._compat import forward

__getattr__ = forward(__name__, "app")  # the names of the old `queuestorm.cli` module
