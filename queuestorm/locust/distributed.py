"""Master and workers. The master hands every worker the run's configuration and its share of --rate, re-splits the
rate as workers join and leave, and gathers each worker's counts and vitals; a worker that dies mid-run is reported.

Messages (Locust custom messages):
  worker -> master  queuestorm_hello   at the worker's start: "send me the configuration"
  master -> worker  queuestorm_config  the RunConfig, plus rate_share (to each worker that says hello, and to all at
                                       the start of a test)
  master -> worker  queuestorm_rate    {rate_share}, when the number of live workers changed
  master -> worker  queuestorm_stop    stop producing (a headless master quits without stopping its workers first)
  worker -> master  queuestorm_vitals  {final, counts, vitals}, with Locust's own stats report (every 3 s; every second
                                       while the capacity search measures steps), and once more after the producer
                                       closed
  worker -> master  queuestorm_dyno_report     the dyno workers' rows, when the test stops (locust/dyno.py)
  worker -> master  queuestorm_backlog_limit   a dyno worker reached --backlog-limit: the master quits the run
"""

import logging
import time

import gevent
from locust.runners import STATE_MISSING, WORKER_REPORT_INTERVAL

from ..model.options import RunConfig
from ..observe.vitals import VitalsSampler
from ..model.periodic import every

log = logging.getLogger("queuestorm")

HELLO_MESSAGE = "queuestorm_hello"
CONFIG_MESSAGE = "queuestorm_config"
RATE_MESSAGE = "queuestorm_rate"
STOP_MESSAGE = "queuestorm_stop"
REPORT_MESSAGE = "queuestorm_vitals"
DYNO_REPORT_MESSAGE = "queuestorm_dyno_report"
LIMIT_MESSAGE = "queuestorm_backlog_limit"
REPORT_SECONDS = WORKER_REPORT_INTERVAL  # one more message per worker as often as Locust's own: a cool master at scale
CAPACITY_REPORT_SECONDS = 1.0  # a capacity step's achieved rate is measured between a worker's reports
RATE_CHECK_SECONDS = 1.0
FINAL_POLL_SECONDS = 0.2


class WorkerBoard:
    """The master's view of its workers, by Locust client id."""

    def __init__(self, environment, config: RunConfig):
        self.environment = environment
        self.config = config
        self.reports: dict[str, dict] = {}
        self.announced_lost: set[str] = set()
        self._shared_among = 0
        self._keeper: gevent.Greenlet | None = None
        self._waiting: list[str] | None = []  # hellos that came before the master was set up; None once it is

    @property
    def runner(self):
        return self.environment.runner

    def share(self, workers: int) -> float:
        return self.config.rate / workers if workers > 0 else self.config.rate

    def config_message(self, workers: int) -> dict:
        return dict(self.config.to_message(), rate_share=self.share(workers),
                    user_classes=[cls.__name__ for cls in self.environment.user_classes])

    def on_hello(self, environment, msg, **_) -> None:
        """A worker that started (mid-run too) asks for the configuration; Locust may have sent it users already."""
        if self._waiting is not None:
            self._waiting.append(msg.node_id)
            return
        self._send_config(msg.node_id)

    def _send_config(self, node_id: str) -> None:
        self.runner.send_message(CONFIG_MESSAGE, self.config_message(max(self.runner.worker_count, 1)), node_id)

    def open(self) -> None:
        """The master is set up: answer the workers that said hello before."""
        waiting, self._waiting = self._waiting or [], None
        for node_id in waiting:
            self._send_config(node_id)

    def on_report(self, environment, msg, **_) -> None:
        self.reports[msg.node_id] = dict(msg.data, client_id=msg.node_id,
                                         index=self.runner.get_worker_index(msg.node_id), received_at=time.time())

    def start(self) -> None:
        self.reports.clear()
        self.announced_lost.clear()
        self._shared_among = max(self.runner.worker_count, 1)
        self.runner.send_message(CONFIG_MESSAGE, self.config_message(self._shared_among))
        if self._keeper is None:
            self._keeper = every(RATE_CHECK_SECONDS, self._keep_rate_and_watch)

    def set_rate(self, rate: float) -> None:
        """A new target for the whole run (the capacity search's next step), split among the workers now."""
        self.config.rate = rate
        self._shared_among = max(self.runner.worker_count, 1)
        self.runner.send_message(RATE_MESSAGE, {"rate_share": self.share(self._shared_among)})

    def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.kill()
            self._keeper = None

    def _keep_rate_and_watch(self) -> None:
        workers = self.runner.worker_count
        if self.config.rate and workers and workers != self._shared_among:
            self._shared_among = workers
            log.info("%d worker(s) now: each enqueues %.1f/s of the %g/s target", workers, self.share(workers),
                     self.config.rate)
            self.runner.send_message(RATE_MESSAGE, {"rate_share": self.share(workers)})
        for client_id in self.lost():
            if client_id not in self.announced_lost:
                self.announced_lost.add(client_id)
                r = self.reports[client_id]
                log.error("worker %s (%s pid %s, producer %s) is gone mid-run: enqueues it had not yet recorded "
                          "in the ledger count as maybe-enqueued", _name(r), r["vitals"]["host"],
                          r["vitals"]["pid"], r["counts"].get("producer"))

    def lost(self) -> list[str]:
        """Workers that reported, never sent their final report, and that Locust no longer hears from."""
        clients = self.runner.clients
        return [client_id for client_id, r in self.reports.items()
                if not r.get("final") and (client_id not in clients or clients[client_id].state == STATE_MISSING)]

    def wait_final(self, timeout: float) -> None:
        """Until every worker that reported has closed its producer and said so, or is gone."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [c for c, r in self.reports.items() if not r.get("final") and c not in self.lost()]
            if not pending:
                return
            gevent.sleep(FINAL_POLL_SECONDS)
        log.warning("no final report from worker(s) %s within %.0fs", ", ".join(self._pending_names()), timeout)

    def _pending_names(self) -> list[str]:
        return [_name(r) for r in self.reports.values() if not r.get("final")]

    def lost_producers(self) -> set[int]:
        return {self.reports[c]["counts"]["producer"] for c in self.lost()
                if self.reports[c]["counts"].get("producer") is not None}

    def workers(self) -> list[dict]:
        lost = set(self.lost())
        rows = []
        for client_id, r in sorted(self.reports.items(), key=lambda item: item[1]["index"]):
            rows.append(dict(r["counts"], worker=_name(r), client_id=client_id, host=r["vitals"]["host"],
                             pid=r["vitals"]["pid"], state="lost" if client_id in lost else
                             "stopped" if r.get("final") else "running"))
        return rows

    def vitals(self) -> list[dict]:
        return [dict(r["vitals"], name=_name(r))
                for r in sorted(self.reports.values(), key=lambda r: r["index"])]


def report_seconds(config: RunConfig) -> float:
    return CAPACITY_REPORT_SECONDS if config.find_capacity else REPORT_SECONDS


def _name(report: dict) -> str:
    return f"worker-{report['index']}"


class WorkerReporter:
    """A worker's side: its counts and vitals to the master, every `interval` seconds and once more at the end."""

    def __init__(self, environment, sampler: VitalsSampler, counts, interval: float):
        self.environment = environment
        self.sampler = sampler
        self.counts = counts
        self.interval = interval
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """The first report goes at once: the master learns this worker's producer before its first enqueue."""
        self.send(final=False)
        if self._greenlet is None:
            self._greenlet = every(self.interval, lambda: self.send(final=False))

    def send(self, final: bool) -> None:
        self.environment.runner.send_message(REPORT_MESSAGE, {"final": final, "counts": self.counts(),
                                                             "vitals": self.sampler.summary()})

    def finish(self) -> None:
        """After the producer closed: the last report, then Locust's own statistics, so that the master's totals
        are complete when it checks (Locust would otherwise send them up to 3 s later)."""
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None
        self.sampler.stop()
        self.send(final=True)
        send_stats = getattr(self.environment.runner, "_send_stats", None)
        if send_stats is not None:
            send_stats()
