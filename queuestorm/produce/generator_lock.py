"""The generator lock: SET NX PX, renewed by its owner, released only by its owner; a crashed owner's lock expires."""

import redis

from ..model.keys import generator_lock_key

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class GeneratorLock:
    def __init__(self, client: redis.Redis, queue: str, owner: str, ttl_seconds: float):
        self.client = client
        self.key = generator_lock_key(queue)
        self.owner = owner
        self.ttl_ms = max(1, int(ttl_seconds * 1000))

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """False when the lock expired and someone else may hold it now: the caller is no longer the generator."""
        return bool(self.client.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    def release(self) -> bool:
        return bool(self.client.eval(_RELEASE, 1, self.key, self.owner))

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return None if value is None else value.decode(errors="replace")
