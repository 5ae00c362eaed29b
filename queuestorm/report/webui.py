"""queuestorm in Locust's web UI: a Queue tab (a live table of every process, and a link to the charts), the charts
page /queuestorm/ and its figures as JSON at /queuestorm/stats (documented in docs/webui.md)."""

import json

from flask import Response, request, send_from_directory
from werkzeug.datastructures import ImmutableMultiDict

from ..redis.connection import redact
from ..model.environment import state_of
from ..model.options import SECRET_OPTIONS
from .assets import STATIC
from .html import add_section

TAB_KEY = "queue"
TABLE = [
    {"key": "process", "title": "Process"},
    {"key": "host", "title": "Host"},
    {"key": "pid", "title": "PID"},
    {"key": "memory", "title": "Memory MB (last / max)"},
    {"key": "cpu", "title": "CPU % (mean / max)"},
    {"key": "lag", "title": "Loop lag ms (mean / max)"},
    {"key": "ping", "title": "Ping ms (mean)"},
    {"key": "backlog", "title": "Backlog"},
    {"key": "completed", "title": "Completed"},
]


def _pair(a, b) -> str:
    return "-" if a is None else f"{a} / {b}"


def process_rows(snapshot: dict) -> list[dict]:
    """The Queue tab's table: the queue itself, then every process (this one, Locust workers, drain processes)."""
    latest = snapshot.get("latest") or {}
    verdict = snapshot.get("verdict")
    rows = [{"process": f"queue ({snapshot['protocol']})", "host": "", "pid": "", "memory": "", "cpu": "", "lag": "",
             "ping": "", "backlog": latest.get("depth", "-"), "completed": latest.get("completed", "-")}]
    for p in snapshot.get("processes") or []:
        rows.append({
            "process": p.get("name") or p.get("role"), "host": p.get("host"), "pid": p.get("pid"),
            "memory": _pair(p.get("rss_mb_last"), p.get("rss_mb_max")),
            "cpu": _pair(p.get("cpu_pct_mean"), p.get("cpu_pct_max")),
            "lag": _pair(p.get("lag_ms_mean"), p.get("lag_ms_max")),
            "ping": "-" if p.get("ping_ms_mean") is None else p["ping_ms_mean"],
            "backlog": p.get("backlog", "-"), "completed": p.get("completed", "-"),
        })
    if verdict:
        rows.append(_verdict_row(f"verdict: {verdict['verdict'].upper()}", verdict))
    for earlier in reversed(snapshot.get("history") or []):
        rows.append(_verdict_row(f"run {earlier['run_id']}: {earlier['verdict']['verdict'].upper()}",
                                 earlier["verdict"]))
    return rows


def _verdict_row(title: str, verdict: dict) -> dict:
    return {"process": title, "host": "", "pid": "", "memory": f"lost {verdict.get('lost')}",
            "cpu": f"duplicated {verdict.get('duplicated')}", "lag": f"unfinished {verdict.get('unfinished', 0)}",
            "ping": "", "backlog": "", "completed": verdict.get("completed")}


def snapshot(environment) -> dict:
    """The figures of the run in progress (or the last one); empty points before the load starts. `history`: the
    verdicts of the session's earlier runs, oldest first."""
    session = state_of(environment).session
    runner = environment.runner
    state = getattr(runner, "state", "") if runner is not None else ""
    run = session.current
    timeline = run.timeline if run is not None else None
    if timeline is None:
        doc = {"run_id": run.run_id if run else None, "protocol": session.config.protocol, "state": state,
               "started_at": None, "interval_s": None, "latest": None, "points": [], "faults": [],
               "processes": [], "verdict": None}
    else:
        doc = timeline.snapshot(state=state)
    doc["capacity"] = run.capacity.result() if run is not None and run.capacity is not None else None
    doc["history"] = [{"run_id": r.run_id, "verdict": r.timeline.verdict} for r in session.runs
                      if r is not run and r.timeline is not None and r.timeline.verdict is not None]
    return doc


def mask_secrets(template_args: dict) -> None:
    """The start form's secret options as their redacted URL: the page never carries a password."""
    for name in SECRET_OPTIONS:
        option = (template_args.get("extra_options") or {}).get(name)
        if option is not None and option.get("default_value"):
            option["default_value"] = redact(option["default_value"])


def keep_unchanged_secrets(form, options) -> ImmutableMultiDict:
    """The submitted form, with each secret field that came back as the redacted value it was shown as replaced by
    the real value (a field the user retyped is taken as typed)."""
    kept = form.copy()
    for name in SECRET_OPTIONS:
        real = getattr(options, name, None)
        if real and kept.get(name) == redact(real):
            kept[name] = real
    return ImmutableMultiDict(kept)


def _protect_secrets(environment, web_ui) -> None:
    render = web_ui.update_template_args

    def update_template_args():
        render()
        mask_secrets(web_ui.template_args)

    web_ui.update_template_args = update_template_args  # called by Locust before every render of the start page
    mask_secrets(web_ui.template_args)

    @web_ui.app.before_request
    def restore_unchanged_secrets():
        if request.method == "POST" and request.path.endswith("/swarm") and environment.parsed_options is not None:
            request.form = keep_unchanged_secrets(request.form, environment.parsed_options)


def install(environment, web_ui) -> None:
    """Register the routes and the tab; a no-op without a web UI (headless)."""
    if web_ui is None:
        return
    app = web_ui.app
    _protect_secrets(environment, web_ui)
    web_ui.template_args["extended_tabs"] = [{"title": "Queue", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [{"key": TAB_KEY, "structure": TABLE}]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./queuestorm/", "title": "Queue charts (queuestorm)"},
        {"href": "./queuestorm/stats", "title": "Queue figures as JSON (queuestorm)"},
    ]

    @app.route("/queuestorm/")
    @web_ui.auth_required_if_enabled
    def queuestorm_page():
        return send_from_directory(STATIC, "queue.html")

    @app.route("/queuestorm/static/<path:name>")
    @web_ui.auth_required_if_enabled
    def queuestorm_static(name):
        return send_from_directory(STATIC, name)

    @app.route("/queuestorm/stats")
    @web_ui.auth_required_if_enabled
    def queuestorm_stats():
        doc = snapshot(environment)
        since = request.args.get("since", type=float)
        if since is not None:  # a poller that has the earlier points asks only for the new ones
            doc["points"] = [p for p in doc["points"] if p["t"] > since]
        return Response(json.dumps(doc), mimetype="application/json")

    @app.after_request
    def add_queue_rows(response):
        """Locust's tab tables read their rows from `extended_stats` in the /stats/requests poll; the index page gets
        the script that links the Queue tab to the charts."""
        if request.path == "/stats/requests" and response.mimetype == "application/json":
            doc = json.loads(response.get_data())
            doc["extended_stats"] = [{"key": TAB_KEY, "data": process_rows(snapshot(environment))}]
            response.set_data(json.dumps(doc))
        elif request.path == "/stats/report" and response.mimetype == "text/html":
            response.set_data(add_section(response.get_data(as_text=True), snapshot(environment)))
        elif request.path == "/" and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            tag = '<script src="./queuestorm/static/tab.js"></script>'
            response.set_data(page.replace("</body>", tag + "</body>", 1))
        return response
