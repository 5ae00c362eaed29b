"""The inline drain processes a run starts beside itself, each with a stable consumer id, supervised: one that dies
for any reason is started again as the same consumer (as a platform restarts a crashed pod or dyno). A `kill-drain`
fault SIGKILLs one on purpose and restarts it itself.

URLs reach the children through their environment, never their argv (`ps` shows argv to every user)."""

import os
import signal
import subprocess
import sys

import gevent

from ..model.child_process import die_with_parent

STOP_SECONDS = 15


class DrainFleet:
    def __init__(self, redis_url: str, ledger_url: str, protocol: str, queue: str, *, processes: int,
                 concurrency: int, work_ms: float, visibility_timeout: float, run_id: str = "",
                 consumer_prefix: str = "inline", log_path: str | None = None):
        self.command = [
            sys.executable, "-m", "queuestorm", "drain", "--protocol", protocol, "--queue", queue,
            "--concurrency", str(concurrency), "--work-ms", str(work_ms),
            "--visibility-timeout", str(visibility_timeout),
        ]
        self.env = dict(os.environ, REDIS_URL=redis_url, QS_LEDGER_URL=ledger_url or redis_url, QS_RUN_ID=run_id)
        self.consumer_prefix = consumer_prefix
        self.log_path = log_path
        self.stop_seconds = max(STOP_SECONDS, 2 * work_ms / 1000 + 5)  # a graceful stop finishes the jobs in hand
        self.processes: list[subprocess.Popen | None] = [None] * processes
        self._killed: set[int] = set()  # killed on purpose, restarted by whoever killed them
        self._starting: set[int] = set()
        self._stopping = False
        self.exit_codes: list[int] = []

    def consumer_id(self, index: int) -> str:
        return f"{self.consumer_prefix}-{index}"

    def _start(self, index: int) -> None:
        """Popen yields to other greenlets (gevent): until the new process is in place, no one else starts this
        index, and a fleet being stopped starts nothing."""
        if self._stopping or index in self._starting:
            return
        self._starting.add(index)
        out = open(self.log_path, "ab") if self.log_path else None
        try:
            self.processes[index] = subprocess.Popen(self.command + ["--consumer-id", self.consumer_id(index)],
                                                     env=self.env, stdout=out, preexec_fn=die_with_parent)
            self._killed.discard(index)
        finally:
            self._starting.discard(index)
            if out is not None:
                out.close()

    def start(self) -> None:
        self._stopping = False
        for index in range(len(self.processes)):
            self._start(index)

    def kill(self, count: int = 1) -> list[int]:
        """SIGKILL up to `count` running drain processes; returns their indexes, for restart()."""
        killed = []
        for index, proc in enumerate(self.processes):
            if len(killed) == count:
                break
            if proc is not None and proc.poll() is None:
                self._killed.add(index)
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
        """Start again every process that ended without being stopped or killed on purpose — an exception, an exit,
        the OOM killer's SIGKILL; returns (index, exit code) of each."""
        restarted = []
        for index, proc in enumerate(self.processes):
            if (proc is not None and index not in self._killed and index not in self._starting
                    and proc.poll() is not None):
                restarted.append((index, proc.returncode))
                self.exit_codes.append(proc.returncode)
                self._start(index)
        return restarted

    def stop(self, timeout: float | None = None) -> list[int]:
        """SIGTERM every process: each finishes the jobs it holds, acknowledges them and exits (SIGKILL after
        `timeout`, by default long enough for the jobs in hand). Returns the exit codes."""
        self._stopping = True
        while self._starting:  # a start under way finishes first, so that its process is stopped too
            gevent.sleep(0.01)
        while running := [p for p in self.processes if p is not None and p.poll() is None]:
            for proc in running:
                proc.terminate()
            for proc in running:
                try:
                    proc.wait(self.stop_seconds if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        codes = [p.returncode for p in self.processes if p is not None]
        self.processes = [None] * len(self.processes)
        return codes
