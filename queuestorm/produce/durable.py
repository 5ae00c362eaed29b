"""Durable enqueues (`--wait-replicas N`): WAIT after each enqueue, so that a job counts as enqueued only once N
replicas have it. A WAIT that comes back short fails the enqueue as NotReplicated: the job is maybe-enqueued (the
primary has it, a failover may lose it), never a confirmed job a failover could silently take away."""

import redis


class NotReplicated(redis.RedisError):
    pass


class ReplicaWait:
    def __init__(self, replicas: int, timeout_ms: int):
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.command = ("WAIT", replicas, timeout_ms)

    @classmethod
    def of(cls, config) -> "ReplicaWait | None":
        return cls(config.wait_replicas, config.wait_timeout_ms) if config.wait_replicas else None

    def confirm(self, acknowledged) -> None:
        """Raises unless the WAIT's answer counts enough replicas."""
        if int(acknowledged) < self.replicas:
            raise NotReplicated(f"WAIT: {int(acknowledged)} of {self.replicas} replica(s) acknowledged the enqueue "
                                f"within {self.timeout_ms} ms")

    def after(self, client: redis.Redis) -> None:
        """WAIT on `client`'s connection, the one the enqueue went through (WAIT counts that connection's writes)."""
        self.confirm(client.execute_command(*self.command))
