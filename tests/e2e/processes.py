"""Running `nano` as a user does: real subprocesses, output read line by line, bounded waits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

NANO = Path(sys.executable).parent / "nano"
START_TIMEOUT = 40.0  # two shared cores: a cold `nano up` can take a while
STOP_TIMEOUT = 20.0


def nano_env() -> dict[str, str]:
    """The user's environment without anything that would point `nano` elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "PYTHONASYNCIODEBUG")}
    env["COLUMNS"] = "200"  # keep rich from wrapping messages we match on
    env["NO_COLOR"] = "1"
    return env


class Background:
    """A long-running `nano` subprocess whose output is read by threads, line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [str(NANO), *args],
            cwd=cwd,
            env=nano_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream, sink: list[str], forward: bool) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line)
            if forward:
                self._lines.put(line)
        if forward:
            self._lines.put(None)

    def output(self) -> str:
        return (
            f"$ nano {' '.join(self.args)} (exit {self.proc.poll()})\n"
            f"--- stdout ---\n{''.join(self.stdout)}--- stderr ---\n{''.join(self.stderr[-60:])}"
        )

    def wait_for_line(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        """The first stdout line starting with ``prefix``; fail on exit or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no line starting {prefix!r} within {timeout:g} s\n{self.output()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                pytest.fail(f"process ended before a line starting {prefix!r}\n{self.output()}")
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        """SIGKILL: the crash a test wants, no clean-up by the process."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process still running after {timeout:g} s\n{self.output()}")
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        """Stop the process if the test left it running (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
