"""--plot of a --find-capacity run: a second PNG beside it (NAME-capacity.png), each step's latency and backlog growth
against its target rate, the sustainable and first failing rates marked."""

from .plot import DPI, WIDTH, save

HEIGHT = 600


def path_beside(path: str) -> str:
    return path[:-len(".png")] + "-capacity.png" if path.lower().endswith(".png") else path + "-capacity.png"


def draw(capacity: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(capacity["steps"], key=lambda s: s["target"])
    rates = [s["target"] for s in steps]

    def values(key):
        return [float("nan") if s[key] is None else s[key] for s in steps]

    fig, (latency, backlog) = plt.subplots(2, 1, sharex=True, figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    latency.plot(rates, values("e2e_p99_ms"), marker="o", color="#d62728", label="e2e p99")
    latency.plot(rates, values("enqueue_p99_ms"), marker="o", color="#ff7f0e", label="enqueue p99")
    latency.set_title("Latency per step (ms)", fontsize=10, loc="left")
    backlog.plot(rates, values("backlog_slope"), marker="o", color="#1f77b4", label="backlog growth (jobs/s)")
    backlog.set_title("Backlog growth per step (jobs/s)", fontsize=10, loc="left")
    backlog.set_xlabel("target rate (jobs/s)")
    for ax in (latency, backlog):
        ax.grid(True, alpha=0.3)
        for rate, color in ((capacity["sustainable_rate"], "#2ca02c"), (capacity["first_failing_rate"], "#d22")):
            if rate is not None:
                ax.axvline(rate, color=color, linewidth=1, linestyle="--")
        for step in steps:
            if not step["ok"]:
                ax.axvspan(step["target"] * 0.995, step["target"] * 1.005, color="#d22", alpha=0.2)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"capacity: sustainable {capacity['sustainable_rate'] or '-'} jobs/s; "
                 f"{capacity['limiting_factor']}", fontsize=11)
    fig.tight_layout()
    save(fig, path)
