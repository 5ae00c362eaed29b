"""The inline drain processes a Locust run starts beside itself, each with a stable consumer id, so that a
`kill-drain` fault can SIGKILL one and restart it as the same consumer (as a restarted pod or dyno would be)."""

import signal
import subprocess
import sys

STOP_SECONDS = 15


class DrainFleet:
    def __init__(self, redis_url: str, ledger_url: str, protocol: str, queue: str, *, processes: int,
                 concurrency: int, work_ms: float, visibility_timeout: float):
        self.base_command = [
            sys.executable, "-m", "queuestorm", "drain", "--redis-url", redis_url, "--protocol", protocol,
            "--queue", queue, "--concurrency", str(concurrency), "--work-ms", str(work_ms),
            "--visibility-timeout", str(visibility_timeout),
        ]
        if ledger_url and ledger_url != redis_url:
            self.base_command += ["--ledger-url", ledger_url]
        self.processes: list[subprocess.Popen | None] = [None] * processes
        self.exit_codes: list[int] = []

    def _start(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(self.base_command + ["--consumer-id", f"inline-{index}"])

    def start(self) -> None:
        for index in range(len(self.processes)):
            self._start(index)

    def kill(self, count: int = 1) -> list[int]:
        """SIGKILL up to `count` running drain processes; returns their indexes, for restart()."""
        killed = []
        for index, proc in enumerate(self.processes):
            if len(killed) == count:
                break
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed.append(index)
        return killed

    def restart(self, indexes: list[int]) -> None:
        for index in indexes:
            self._start(index)

    def alive(self) -> int:
        return sum(1 for proc in self.processes if proc is not None and proc.poll() is None)

    def restart_crashed(self) -> list[tuple[int, int]]:
        """Restart processes that ended on their own (not by a stop or a kill-drain SIGKILL), as a platform restarts
        a crashed dyno or pod; returns (index, exit code) of each. The run checked its URLs before starting them, so
        a drain that fails now met a transient refusal (maxclients, a restarting server)."""
        restarted = []
        for index, proc in enumerate(self.processes):
            if proc is not None and proc.poll() not in (None, 0, -signal.SIGKILL):
                restarted.append((index, proc.returncode))
                self.exit_codes.append(proc.returncode)
                self._start(index)
        return restarted

    def stop(self) -> None:
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes = [None] * len(self.processes)
