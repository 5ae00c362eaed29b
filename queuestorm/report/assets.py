"""The web UI's and the HTML report's static files: the Queue tab, the charts page, their scripts and styles."""

import os

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
