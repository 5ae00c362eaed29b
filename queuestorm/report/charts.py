"""At the end of the process: the queue section into the --html report, and the --plot PNG."""

import logging
import sys

from . import capacity_plot, html as html_report, plot
from ..model.environment import state_of
from ..model.errors import UsageError
from .webui import snapshot

log = logging.getLogger("queuestorm")


def write(environment) -> None:
    """Called on Locust's quit event, after Locust wrote its HTML report."""
    state = state_of(environment)
    run = state.session.current if state is not None and state.session is not None else None
    if run is None or run.timeline is None:
        return
    options = environment.parsed_options
    doc = snapshot(environment)
    html_file = getattr(options, "html_file", None)
    if html_file:
        try:
            html_report.add_to_file(html_file, doc)
        except OSError as e:
            print(f"queuestorm: error: cannot add the queue charts to {html_file}: {e.strerror}", file=sys.stderr)
    path = getattr(options, "plot", "")
    if path:
        try:
            plot.draw(doc, path)
            log.info("plot written to %s", path)
            if doc.get("capacity"):
                capacity_plot.draw(doc["capacity"], capacity_plot.path_beside(path))
                log.info("capacity plot written to %s", capacity_plot.path_beside(path))
        except UsageError as e:
            print(f"queuestorm: error: {e}", file=sys.stderr)
