"""What a run shows: the console table, the HTML report, the plots, the web UI."""

from .._compat import forward

__getattr__ = forward(__name__, "console")  # the names of the old `queuestorm.report` module
