"""A stalled event loop is noticed, named, and cannot keep a host from stopping.

A node that blocks the loop (``time.sleep`` in an ``async def``) freezes every step of its
host: no timeout fires, no heartbeat goes out. The watchdog's thread sees the loop's beat
stop, logs which steps have messages in flight (the likely culprit), and the signal handler
it installs works even then: SIGTERM or Ctrl-C on a stalled host ends the process at once
(its unacked messages are redelivered to another host, nothing is lost); on a healthy host
it hands the signal to the loop (``on_signal``), which decides how to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["LoopWatchdog"]

log = logging.getLogger("nanoservice.watchdog")

BEAT = 0.25
"""Seconds between the loop's beats."""


class LoopWatchdog:
    """Watches one event loop from a thread; owns SIGINT and SIGTERM while it runs."""

    def __init__(
        self,
        on_signal: Callable[[], None],
        in_flight: Callable[[], list[str]] = list,
        *,
        stall: float = 5.0,
    ) -> None:
        self.on_signal = on_signal
        self.in_flight = in_flight
        self.stall = stall
        self.last = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._beat = self._loop.create_task(self._beating())
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._signal)

    async def _beating(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(BEAT)

    def stalled_for(self) -> float:
        """Seconds since the loop last ran the watchdog's beat (beyond one beat's wait)."""
        return max(0.0, time.monotonic() - self.last - BEAT)

    def _watch(self) -> None:
        reported = False
        while not self._done.wait(0.5):
            stalled = self.stalled_for()
            if stalled >= self.stall and not reported:
                reported = True
                busy = ", ".join(self.in_flight()) or "no step message in flight"
                log.error(
                    "the event loop has been blocked for %.0f s (%s): a node is blocking it "
                    "(e.g. time.sleep in an async def; write it as a plain def)",
                    stalled,
                    busy,
                )
            elif stalled < self.stall and reported:
                reported = False
                log.warning("the event loop runs again")

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        """Runs in the main thread between bytecodes, even while the loop is blocked."""
        if self.stalled_for() >= 1.0:
            log.error(
                "%s: the event loop is blocked, stopping at once (unacked messages will be "
                "redelivered)",
                signal.Signals(signum).name,
            )
            logging.shutdown()
            os._exit(128 + signum)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.on_signal)

    def stop(self) -> None:
        self._done.set()
        if self._beat is not None:
            self._beat.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                signal.signal(sig, signal.SIG_DFL)
