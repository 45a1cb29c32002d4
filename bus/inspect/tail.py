"""Live events: one per message the engine stores, as it is published.

A tail is a plain (core NATS) subscription on ``nano.<wf>.>``: it sees what is published
from the moment it starts, costs the stream nothing and leaves no consumer behind. Each
message becomes an :class:`Event`; ``Tail`` remembers when each step's input arrived, so an
event from a step says how long that step took.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from nanoservice import subjects
from nanoservice.types import REPLAY_OF, RETURN, ROUTE, SKIP, STEP, Headers

__all__ = ["OUTCOMES", "Event", "Tail"]

OUTCOMES = ("started", "ok", "error_route", "skip", "returned", "done", "failed")

_REMEMBERED = 10_000


@dataclass(frozen=True)
class Event:
    """One stored message, as a step of an execution."""

    time: float
    workflow: str
    execution: str
    step: str
    """The step that sent it (``trigger`` for a trigger)."""
    to: str
    """Where it goes: a step, ``_done`` or ``_dlq``."""
    route: str | None
    outcome: str
    duration: float | None
    """Seconds from the sending step's input to this message (None if not seen)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Tail:
    """Turns live messages into events (``event``), filtered by step and outcome."""

    def __init__(
        self,
        starts: dict[str, list[str]] | None = None,
        *,
        steps: set[str] | None = None,
        outcomes: set[str] | None = None,
    ) -> None:
        self.starts = starts or {}
        """The first steps of each workflow (a trigger is their input)."""
        self.steps, self.outcomes = steps, outcomes
        self._arrived: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def event(self, subject: str, headers: Headers, at: float | None = None) -> Event | None:
        """The event of one message, or None (not an engine message, or filtered out)."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[0] != subjects.PREFIX:
            return None  # timers (5 tokens) and declared trigger subjects are not shown
        at = time.time() if at is None else at
        _, workflow, to, execution = parts
        sender = headers.get(STEP, "")
        route = headers.get(ROUTE)
        if to == subjects.START:
            step, outcome = "trigger", "started"
            if headers.get(REPLAY_OF):
                route = f"replay of {headers[REPLAY_OF]}"
        elif to == subjects.DONE:
            step, outcome = sender, "done"
        elif to == subjects.DLQ:
            step, outcome = sender, "failed"
        elif RETURN in headers:
            step, outcome = sender, "returned"
        elif SKIP in headers:
            step, outcome = sender, "skip"
        else:
            step, outcome = sender or "trigger", "error_route" if route == "error" else "ok"
        start = self._arrived.get((workflow, execution, step))
        if to == subjects.START:
            for first in self.starts.get(workflow, ()):
                self._remember((workflow, execution, first), at)
        elif not to.startswith("_") and outcome != "skip":
            self._remember((workflow, execution, to), at)
        if self.steps is not None and step not in self.steps and to not in self.steps:
            return None
        if self.outcomes is not None and outcome not in self.outcomes:
            return None
        duration = round(at - start, 6) if start is not None else None
        return Event(at, workflow, execution, step, to, route, outcome, duration)

    def _remember(self, key: tuple[str, str, str], at: float) -> None:
        self._arrived[key] = at
        self._arrived.move_to_end(key)
        while len(self._arrived) > _REMEMBERED:
            self._arrived.popitem(last=False)
