"""A user asked to stop twice at once — Locust's --run-time and queuestorm's own end of the test (a backlog limit,
the capacity search) both stopping the runner — waits for the first stop instead of raising."""

from locust.user.users import LOCUST_STATE_STOPPING


class StopsOnce:
    def stop(self, force: bool = False):
        if not force and self._state == LOCUST_STATE_STOPPING:
            return False  # already finishing its task: Locust's User.stop would raise "unexpected state"
        return super().stop(force)
