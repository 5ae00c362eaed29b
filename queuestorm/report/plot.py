"""--plot FILE.png: throughput, queue depth, end-to-end latency and the loss counters over time, faults shaded, for
headless runs. Needs matplotlib (pip install 'queuestorm[plot]')."""

import os

from ..model.errors import UsageError

WIDTH, HEIGHT, DPI = 1200, 900, 100  # pixels of the PNG


def check(path: str) -> None:
    """At the start, so a long run does not end without its plot."""
    if not path:
        return
    if not path.lower().endswith(".png"):
        raise UsageError(f"--plot {path!r} must name a .png file")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"--plot {path!r}: cannot write in {directory}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed: pip install 'queuestorm[plot]'") from None


def _series(points: list[dict], key: str) -> list:
    values = []
    for p in points:
        v = p
        for part in key.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        values.append(float("nan") if v is None else v)
    return values


PANELS = [
    ("Throughput (jobs/s)", [("enqueue", "enqueue_rate", "#2ca02c"), ("drain", "drain_rate", "#9467bd")]),
    ("Queue depth (jobs)", [("depth", "depth", "#1f77b4")]),
    ("End-to-end latency (ms)", [("p50", "e2e_ms.p50", "#17becf"), ("p95", "e2e_ms.p95", "#ff7f0e"),
                                 ("p99", "e2e_ms.p99", "#d62728")]),
    ("Loss counters (jobs)", [("lost (at the check)", "lost", "#e377c2"), ("unaccounted", "unaccounted", "#d62728"), ("duplicated", "duplicated", "#8c564b"),
                              ("maybe enqueued", "maybe_enqueued", "#7f7f7f")]),
]


def draw(snapshot: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = snapshot["points"]
    t = [p["t"] for p in points]
    fig, axes = plt.subplots(len(PANELS), 1, sharex=True, figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    for ax, (title, series) in zip(axes, PANELS):
        for label, key, color in series:
            ax.plot(t, _series(points, key), label=label, color=color, linewidth=1.6,
                    marker="o" if key == "lost" else None)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
        for fault in snapshot.get("faults") or []:
            start, lasts = fault["at_s"], fault.get("duration_s") or 0
            color = "#d22" if "error" in fault else "#e67e00"
            if lasts:
                ax.axvspan(start, start + lasts, color=color, alpha=0.15)
            ax.axvline(start, color=color, linewidth=1)
    for fault in snapshot.get("faults") or []:
        axes[0].annotate(fault["kind"], (fault["at_s"], 1), xycoords=("data", "axes fraction"), fontsize=8,
                         color="#e67e00", xytext=(3, -12), textcoords="offset points")
    axes[-1].set_xlabel("seconds since the load started")
    verdict = snapshot.get("verdict") or {}
    headline = f"queuestorm run {snapshot['run_id']} ({snapshot['protocol']})"
    if verdict.get("verdict"):
        headline += (f": {verdict['verdict'].upper()}, lost {verdict.get('lost', '-')}, "
                     f"duplicated {verdict.get('duplicated', '-')}")
    fig.suptitle(headline, fontsize=12)
    fig.tight_layout()
    save(fig, path)


def save(fig, path: str) -> None:
    """Write a figure and close it; an unwritable path is one line."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=DPI)
    except OSError as e:
        raise UsageError(f"cannot write --plot {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
