"""The verdict as a console table and as a JSON file."""

import json
import os

from ..ledger.check import Verdict
from ..model.errors import UsageError


def table(title: str, rows: list[tuple[str, object]]) -> str:
    width_k = max(len(k) for k, _ in rows)
    width_v = max(len(str(v)) for _, v in rows)
    line = f"+{'-' * (width_k + 2)}+{'-' * (width_v + 2)}+"
    out = [title, line]
    out += [f"| {k:<{width_k}} | {str(v):>{width_v}} |" for k, v in rows]
    out.append(line)
    return "\n".join(out)


SECTIONS = ("vitals", "workers")  # lists of rows, shown as tables of their own


def grid(title: str, headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(row):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"

    return "\n".join([title, line, fmt(headers), line, *map(fmt, cells[1:]), line])


def _pair(a, b) -> str:
    return "-" if a is None else f"{a}/{b}"


def render_processes(processes: list[dict]) -> str:
    """Vitals of every process: memory (mean / max / growth over the run), CPU, event-loop lag, Redis ping."""
    headers = ["process", "host", "pid", "rss MB mean/max", "growth MB", "cpu % mean", "lag ms mean/max",
               "ping ms", "completed", "rate/s"]
    rows = []
    for p in processes:
        growth = p.get("rss_growth_mb")
        rows.append([
            p.get("name") or p.get("role"), p.get("host"), p.get("pid"),
            _pair(p.get("rss_mb_mean"), p.get("rss_mb_max")), None if growth is None else f"{growth:+.1f}",
            p.get("cpu_pct_mean"), _pair(p.get("lag_ms_mean"), p.get("lag_ms_max")),
            p.get("ping_ms_mean") if not p.get("ping_errors") else f"{p.get('ping_ms_mean')} ({p['ping_errors']} errors)",
            p.get("completed"), p.get("rate"),
        ])
    return grid("Processes", headers, rows)


def render_workers(workers: list[dict]) -> str:
    headers = ["worker", "host", "pid", "producer", "state", "requests", "enqueued", "maybe enqueued", "dropped"]
    keys = ["worker", "host", "pid", "producer", "state", "requests", "enqueued", "maybe_enqueued", "dropped"]
    rows = [[w.get(k) for k in keys] for w in workers]
    rows.append(["total", "", "", "", ""] + [sum(w.get(k) or 0 for w in workers) for k in keys[5:]])
    return grid("Locust workers", headers, rows)


def _ids(ids: list[str], total: int) -> str:
    if not ids:
        return "-"
    shown = ", ".join(ids[:5])
    return shown + (f" (+{total - 5} more)" if total > 5 else "")


def render(v: Verdict, server_note: str | None = None) -> str:
    e2e = v.e2e_ms or {}

    def ms(key):
        return "-" if e2e.get(key) is None else f"{e2e[key]:.1f}"

    rows = [
        ("run id", v.run_id),
        ("protocol", v.protocol),
        ("enqueued", v.enqueued),
        ("maybe enqueued", v.maybe_enqueued),
        ("not sent (connect failed)", v.not_sent),
        ("completed", v.completed),
        ("lost", v.lost),
        ("unfinished (still queued or held)", v.unfinished),
        ("duplicated", v.duplicated),
        ("unexpected", v.unexpected),
        ("recovered", v.recovered),
        ("invalid (parked, not recorded)", v.invalid),
        ("e2e p50 / p95 / p99 / max (ms)", f"{ms('p50')} / {ms('p95')} / {ms('p99')} / {ms('max')}"),
        ("first lost", _ids(v.lost_ids, v.lost)),
        ("first unfinished", _ids(v.unfinished_ids, v.unfinished)),
        ("first duplicated", _ids(v.duplicated_ids, v.duplicated)),
    ]
    for key, value in v.extra.items():
        if key in SECTIONS or isinstance(value, dict):  # shown as tables of their own
            continue
        if isinstance(value, list) and key != "faults":
            value = ", ".join(map(str, value))
        if key == "faults":
            value = ", ".join(f"{f['kind']}@{f['at_s']:g}s" + (" (failed)" if "error" in f else "") for f in value)
        rows.append((key.replace("_", " "), value or "-"))
    if v.unclosed_producers:
        rows.append(("producers that never closed", ", ".join(map(str, v.unclosed_producers[:10]))))
    text = table("Loss check", rows)
    if v.extra.get("workers"):
        text = render_workers(v.extra["workers"]) + "\n" + text
    if v.extra.get("vitals"):
        text = render_processes(v.extra["vitals"]) + "\n" + text
    status = "PASS" if v.passed else "FAIL: " + "; ".join(v.reasons)
    text += f"\nverdict: {status}"
    if server_note:
        text += f"\nnote: {server_note}"
    return text


def write_json(v: Verdict, path: str) -> None:
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "w") as f:
            json.dump(v.to_json(), f, indent=2)
            f.write("\n")
    except OSError as e:
        raise UsageError(f"cannot write report {path}: {e.strerror}") from None
