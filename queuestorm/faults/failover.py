"""The `failover` fault: a replica promoted to primary, as a hosted Redis does it.

    mode sentinel      SENTINEL FAILOVER on one of the target's sentinels (ours or the user's own): the old primary
                       is demoted; what it acknowledged and had not yet replicated is lost
    mode kill-primary  (--embedded sentinel only) hold the replication stream back for `lag` s while the load goes on,
                       SIGKILL the primary, promote the replica; the primary comes back empty after `down_for` s
                       and the sentinels make it a replica. Every write acknowledged during the lag is lost.

Either waits (up to `timeout` s) until the sentinels name the new primary; the fault's time is the failover's.
"""

import gevent

from ..redis.embedded_topology import EmbeddedSentinel, wait_until
from ..model.errors import UsageError
from .kinds import CHOICES, FAULTS, Fault
from ..model.option_types import bounded
from ..redis.topology import sentinel_of

FAILOVER_MODES = ("sentinel", "kill-primary")


class Failover(Fault):
    kind = "failover"
    params = {"mode": "sentinel", "lag": 0.5, "down_for": 2.0, "timeout": 30.0}
    bounds = {"lag": bounded(high=60), "down_for": bounded(high=3600), "timeout": bounded(low=1, high=600)}

    def inject(self) -> str:
        found = sentinel_of(self.context.admin)
        if found is None:
            raise UsageError("failover needs a redis+sentinel:// target (or --embedded sentinel)")
        self._manager, self._service = found
        before = self._manager.discover_master(self._service)
        self._killed = None
        if self.mode == "kill-primary":
            detail = self._kill_primary(before)
        else:
            self._manager.execute_command("SENTINEL", "FAILOVER", self._service, once=True)
            detail = f"SENTINEL FAILOVER {self._service}"
        after = self._wait_for_new_primary(before)
        return f"{detail}: primary {_address(before)} -> {_address(after)}"

    def _kill_primary(self, before) -> str:
        topology = self.context.server
        if not isinstance(topology, EmbeddedSentinel):
            raise UsageError("failover mode kill-primary needs --embedded sentinel: it kills the primary's process")
        topology.hold_replication()
        gevent.sleep(float(self.lag))  # the window in which acknowledged writes reach the primary alone
        self._killed = topology.name_of(before[1])
        topology.kill(self._killed)
        # forced: no waiting for the sentinels to agree that the primary is down
        self._manager.execute_command("SENTINEL", "FAILOVER", self._service, once=True)
        return f"SIGKILL {self._killed} after {float(self.lag):g}s of unreplicated writes"

    def _wait_for_new_primary(self, before):
        """Until every sentinel names one new primary: one still naming the old one would send clients back to it
        (once it restarts, empty, it is a primary again until the sentinels demote it)."""
        def promoted():
            named = {_named_primary(sentinel, self._service) for sentinel in self._manager.sentinels}
            address = named.pop() if len(named) == 1 else None
            return address if address and address != tuple(before) else None
        return wait_until(promoted, "the sentinels did not all name a new primary", float(self.timeout),
                          sleep=gevent.sleep)

    @property
    def lasts(self) -> float:
        return float(self.down_for) if self.mode == "kill-primary" else 0.0

    def undo(self) -> None:
        if self._killed is not None:
            self.context.server.restart(self._killed)
            self._killed = None


def _named_primary(sentinel, service: str) -> tuple | None:
    reply = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    if not reply:
        return None
    host, port = reply
    return host.decode() if isinstance(host, bytes) else host, int(port)


def _address(address) -> str:
    return f"{address[0]}:{address[1]}"


FAULTS[Failover.kind] = Failover
CHOICES[("failover", "mode")] = FAILOVER_MODES
