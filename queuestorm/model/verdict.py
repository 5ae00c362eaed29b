"""The verdict: one pure function of what the run's phases found — the check's classification, how the settle ended,
the thresholds crossed and the run's own facts. Nothing else decides pass or fail."""


def reasons_for(v, *, settled=None, grace: float | None = None, breaches=()) -> list[str]:
    """`v`: the check's classification (check.Verdict); `settled`: the settle phase's outcome (None when the check
    runs on its own, later); `breaches`: one line per threshold crossed."""
    reasons = []
    if v.lost > v.max_lost:
        reasons.append(f"{v.lost} job(s) lost" + (f" (allowed: {v.max_lost})" if v.max_lost else ""))
    unfinished = v.unfinished
    if unfinished:
        if settled is not None and not settled.settled and grace is not None:
            reasons.append(f"{unfinished} job(s) unfinished: the drain did not finish within --grace {grace:g}s")
        else:
            reasons.append(f"{unfinished} job(s) unfinished (still queued or held by a consumer)")
    if v.unexpected:
        reasons.append(f"{v.unexpected} job(s) completed that were never enqueued")
    if v.duplicated > v.max_duplicated:
        reasons.append(f"{v.duplicated} job(s) duplicated (allowed: {v.max_duplicated})")
    if v.invalid:
        reasons.append(f"{v.invalid} job(s) of this run could not be recorded: parked whole as invalid "
                       "(queuestorm foreign --invalid lists them)")
    if v.enqueued + v.maybe_enqueued == 0:
        reasons.append("no job was enqueued: nothing was proven")
    return reasons + list(breaches)


def judge(v, **facts):
    """Set `v`'s reasons and verdict from reasons_for(v, **facts); returns `v`."""
    v.reasons = reasons_for(v, **facts)
    v.verdict = "fail" if v.reasons else "pass"
    return v
