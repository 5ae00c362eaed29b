"""Child processes that never outlive the queuestorm process that started them."""

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A Popen preexec_fn: Linux sends the child SIGTERM (a drain's graceful stop, a redis-server's clean exit) when
    its parent dies, even by SIGKILL or on an exit path that skips the parent's own stop."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's own stop is all there is
        pass
