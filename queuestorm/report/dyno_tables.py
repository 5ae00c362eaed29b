"""The dyno harness's end-of-run tables, as seed 003 printed them: Constants, Messaging stats, Worker vitals,
Worker timings and a status line. The same figures go into the verdict JSON under `dyno`."""

from .console import table

SHOWN_WORKERS = 5


def dyno_summary(config, rows: list[dict], seconds: float, verdict) -> dict:
    """`verdict.extra["vitals"]` (one row per process) gives each worker its process's memory and loop lag."""
    vitals = {v["pid"]: v for v in verdict.extra.get("vitals", [])}
    workers = []
    for row in sorted(rows, key=lambda r: (-r["max_backlog"], r["pid"], r["worker"])):
        process = vitals.get(row["pid"], {})
        workers.append(dict(row, mem_mb_mean=process.get("rss_mb_mean"), mem_mb_max=process.get("rss_mb_max"),
                            loop_lag_ms_mean=process.get("lag_ms_mean")))
    constants = {
        "TASKS_PER_SECOND": config.tasks_per_second or config.rate, "TEST_DURATION_SECONDS": round(seconds, 1),
        "MAX_FLATS": config.max_flats, "ITEM_PAYLOAD_KB": config.payload_kb,
        "MAX_WORKER_BACKLOG": config.backlog_limit, "NUM_WORKERS": len(rows), "WARMUP_SECONDS": config.warmup,
    }
    capacity = verdict.extra.get("capacity")
    if capacity is not None:
        constants.update(capacity_constants(capacity, rows))
    return {
        "constants": constants,
        "messaging": {
            "tasks_sent": verdict.enqueued + verdict.maybe_enqueued,
            "tasks_received": sum(r["received"] for r in rows),
            "tasks_completed": sum(r["cycles"] for r in rows),
            "uptime_seconds": round(seconds, 1),
            "warming_up": seconds < config.warmup,
        },
        "workers": workers,
        "reached_backlog_limit": sum(1 for r in rows if r["reached_limit"]),
    }


def capacity_constants(capacity: dict, rows: list[dict]) -> dict:
    """Seed 003's question per dyno (a Locust process): the tasks/s it sustains with its workers, in place of the
    fixed TASKS_PER_SECOND the search does not hold."""
    dynos = max(len({r["pid"] for r in rows}), 1)
    sustainable, failing = capacity["sustainable_rate"], capacity["first_failing_rate"]
    return {
        "TASKS_PER_SECOND": "capacity search",
        "WORKERS_PER_DYNO": round(len(rows) / dynos, 1) if len(rows) % dynos else len(rows) // dynos,
        "SUSTAINABLE_TASKS_PER_SECOND_PER_DYNO": None if sustainable is None else round(sustainable / dynos, 1),
        "FIRST_FAILING_TASKS_PER_SECOND_PER_DYNO": None if failing is None else round(failing / dynos, 1),
        "CAPACITY_CONFIRMED": capacity["confirmed"],
        "LIMITING_FACTOR": capacity["limiting_factor"],
    }


def _grid(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [title, line, "| " + " | ".join(f"{h:<{w}}" for h, w in zip(header, widths)) + " |", line]
    out += ["| " + " | ".join(f"{'-' if x is None else x!s:>{w}}" for x, w in zip(row, widths)) + " |" for row in rows]
    out.append(line)
    return "\n".join(out)


def render_dyno(dyno: dict, passed: bool) -> str:
    m = dyno["messaging"]
    shown = dyno["workers"][:SHOWN_WORKERS]
    hidden = len(dyno["workers"]) - len(shown)
    parts = [
        table("Constants", [(k, "-" if v is None else v) for k, v in dyno["constants"].items()]),
        table("Messaging stats", [("Tasks Sent", m["tasks_sent"]), ("Tasks Received", m["tasks_received"]),
                                  ("Tasks Completed", m["tasks_completed"]), ("Uptime Seconds", m["uptime_seconds"]),
                                  ("Warming Up", m["warming_up"])]),
        _grid("Worker vitals (highest backlog first)",
              ["pid", "worker", "cycles", "max backlog", "mean mem (mb)", "max mem (mb)", "evt loop mean (ms)"],
              [[w["pid"], w["worker"], w["cycles"], w["max_backlog"], w["mem_mb_mean"], w["mem_mb_max"],
                w["loop_lag_ms_mean"]] for w in shown]),
        _grid("Worker timings", ["pid", "worker", "task mean (ms)", "fetch mean (ms)", "save mean (ms)",
                                 "ping mean (ms)"],
              [[w["pid"], w["worker"], w["task_mean_ms"], w["fetch_mean_ms"], w["save_mean_ms"], w["ping_mean_ms"]]
               for w in shown]),
    ]
    if hidden:
        parts.append(f"... plus: {hidden} extra hidden workers")
    c = dyno["constants"]
    if "SUSTAINABLE_TASKS_PER_SECOND_PER_DYNO" in c:
        sustainable = c["SUSTAINABLE_TASKS_PER_SECOND_PER_DYNO"]
        parts.append(f"capacity: {'-' if sustainable is None else sustainable} tasks/s per dyno sustainable at "
                     f"{c['WORKERS_PER_DYNO']} workers per dyno ({c['LIMITING_FACTOR']})")
    status = "status: Test succeeded" if passed else "status: Test failed"
    if dyno["reached_backlog_limit"]:
        status += f"\n{dyno['reached_backlog_limit']} reached backlog limit"
    parts.append(status)
    return "\n".join(parts)
