"""The one exception type whose message is shown to the user as-is, with exit code 2."""

EXIT_PASS = 0
EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2


class UsageError(Exception):
    """A user's mistake or an unreachable dependency: one line, no traceback, exit 2."""
