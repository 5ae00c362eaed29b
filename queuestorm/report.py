"""The verdict as a console table and as a JSON file."""

import json
import os

from .check import Verdict
from .errors import UsageError


def table(title: str, rows: list[tuple[str, object]]) -> str:
    width_k = max(len(k) for k, _ in rows)
    width_v = max(len(str(v)) for _, v in rows)
    line = f"+{'-' * (width_k + 2)}+{'-' * (width_v + 2)}+"
    out = [title, line]
    out += [f"| {k:<{width_k}} | {str(v):>{width_v}} |" for k, v in rows]
    out.append(line)
    return "\n".join(out)


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
        ("completed", v.completed),
        ("lost", v.lost),
        ("duplicated", v.duplicated),
        ("unexpected", v.unexpected),
        ("recovered", v.recovered),
        ("e2e p50 / p95 / p99 / max (ms)", f"{ms('p50')} / {ms('p95')} / {ms('p99')} / {ms('max')}"),
        ("first lost", _ids(v.lost_ids, v.lost)),
        ("first duplicated", _ids(v.duplicated_ids, v.duplicated)),
    ]
    for key, value in v.extra.items():
        if isinstance(value, dict):  # sections with tables of their own (dyno, vitals)
            continue
        if key == "faults":
            value = ", ".join(f"{f['kind']}@{f['at_s']:g}s" + (" (failed)" if "error" in f else "") for f in value)
        rows.append((key.replace("_", " "), value or "-"))
    if v.unclosed_producers:
        rows.append(("producers that never closed", ", ".join(map(str, v.unclosed_producers[:10]))))
    text = table("Loss check", rows)
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
