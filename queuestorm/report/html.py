"""The queue charts and the verdict inside Locust's HTML report (--html, and the web UI's report download): one
self-contained section, the shipped chart script inlined with the run's figures."""

import json
import os

from .assets import STATIC

MARK = "<!-- queuestorm -->"


def _static(name: str) -> str:
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()


def section(snapshot: dict) -> str:
    data = json.dumps(snapshot).replace("</", "<\\/")
    return (f'{MARK}<section id="queuestorm-report" style="max-width:1400px;margin:24px auto">'
            f'<h2 style="font-family:sans-serif;padding:0 14px">Queue (queuestorm)</h2>'
            f'<style>{_static("queue.css")}</style><div class="qs-root" id="queuestorm"></div>'
            f'<script>{_static("qscharts.js")}</script><script>{_static("queue.js")}</script>'
            f'<script>QueueView.render({data}, document.getElementById("queuestorm"));</script></section>')


def add_section(page: str, snapshot: dict) -> str:
    """The report page with the queue section before </body> (once: a page that has it is returned as it is)."""
    if MARK in page:
        return page
    at = page.rfind("</body>")
    block = section(snapshot)
    return page + block if at < 0 else page[:at] + block + page[at:]


def add_to_file(path: str, snapshot: dict) -> None:
    with open(path, encoding="utf-8") as f:
        page = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(add_section(page, snapshot))
