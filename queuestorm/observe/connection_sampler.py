"""Connections in use on the target, sampled once a second from INFO clients, against a plan's connection limit
(Heroku Redis plans range from 20 to 65,000): the figure seed 000's users could not see in their dashboard."""

import logging

import gevent
import redis

from ..model.periodic import every

log = logging.getLogger("queuestorm")

SAMPLE_SECONDS = 1.0


class ConnectionSampler:
    def __init__(self, client: redis.Redis, limit: int = 0):
        self.client = client
        self.limit = limit
        self.peak = 0
        self.samples = 0
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = every(SAMPLE_SECONDS, self._sample, now=True)

    def _sample(self) -> None:
        try:
            connected = int(self.client.info("clients")["connected_clients"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return  # a refused or paused sample is not a figure
        self.samples += 1
        if connected > self.peak:
            self.peak = connected
            if self.limit and connected >= 0.9 * self.limit:
                log.warning("%d connections in use: %.0f%% of the plan's %d", connected,
                            100 * connected / self.limit, self.limit)

    def stop(self) -> dict:
        if self._greenlet is not None:
            self._greenlet.kill()
        summary = {"connections_peak": self.peak if self.samples else "-"}
        if self.limit:
            summary["connection_limit"] = self.limit
        return summary
