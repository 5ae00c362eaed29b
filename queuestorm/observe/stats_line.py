"""The loss-race stats line (seed 004): every --stats-line seconds the standalone or master process prints

  {"saved": .., "completed": .., "lost": .., "throughput": .., "loss_percent": .., "elapsed_s": ..}

from the ledger. saved = jobs whose enqueue the server confirmed; completed = distinct jobs completed; throughput =
completed per second since the load started; lost = jobs saved at least SETTLE_SECONDS before the line and still
not completed (a job younger than that may simply be in flight). The last line, printed after the loss check with
"final": true, counts every saved job not completed, as the checker does.
"""

import json
import logging
import sys
import time
from collections import deque

import gevent
import redis

from ..ledger.reader import LedgerReader, count_and_not
from ..model.options import STATS_LINE_SETTLE_SECONDS as SETTLE_SECONDS
from ..redis.connection import NETWORK_ERRORS
from ..model.periodic import every

log = logging.getLogger("queuestorm")


class StatsLine:
    def __init__(self, client: redis.Redis, run_id: str, interval: float, settle_seconds: float = SETTLE_SECONDS,
                 out=None, clock=time.monotonic):
        self.reader = LedgerReader(client, run_id)
        self.interval = interval
        self.settle_seconds = settle_seconds
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self._saved_history: deque[tuple[float, dict[int, bytes]]] = deque()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = every(self.interval, self._print)

    def stop(self, final: bool = True) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        if final:
            self._print(final=True)

    def _print(self, final: bool = False) -> None:
        try:
            line = self.line(final)
        except NETWORK_ERRORS as e:
            log.warning("stats line skipped: the ledger did not answer (%s)", e)
            return
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def line(self, final: bool = False) -> dict:
        now = self.clock()
        saved, done = self._read()
        self._saved_history.append((now, saved))
        settled = saved if final else self._saved_before(now - self.settle_seconds)
        lost = sum(count_and_not(bits, done.get(pid, b"")) for pid, bits in settled.items())
        n_saved = sum(count_and_not(bits) for bits in saved.values())
        n_done = sum(count_and_not(bits) for bits in done.values())
        elapsed = now - self.started
        line = {
            "saved": n_saved,
            "completed": n_done,
            "lost": lost,
            "throughput": round(n_done / elapsed, 1) if elapsed > 0 else 0.0,
            "loss_percent": round(100 * lost / n_saved, 2) if n_saved else 0.0,
            "elapsed_s": round(elapsed, 1),
        }
        if final:
            line["final"] = True
        return line

    def _saved_before(self, moment: float) -> dict[int, bytes]:
        """The newest snapshot taken at or before `moment`; older ones are no longer needed."""
        history = self._saved_history
        while len(history) > 1 and history[1][0] <= moment:
            history.popleft()
        return history[0][1] if history[0][0] <= moment else {}

    def _read(self) -> tuple[dict[int, bytes], dict[int, bytes]]:
        return self.reader.saved_and_completed()


def start(environment, ledger) -> StatsLine | None:
    interval = getattr(environment.parsed_options, "stats_line", 0) or 0
    if interval <= 0:
        return None
    stats = StatsLine(ledger.client, ledger.run_id, interval)
    stats.start()
    return stats


def stop(stats: StatsLine | None) -> None:
    if stats is not None:
        stats.stop(final=True)
