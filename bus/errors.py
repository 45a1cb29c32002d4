"""Exceptions with a place: every user-facing error says what went wrong and where."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "InvalidMessageError",
    "NanoError",
    "NodeError",
    "NonRetryableError",
    "Problem",
    "RoutingError",
    "UnknownNodeError",
    "WorkflowError",
    "one_line",
]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` with line breaks, control characters and lone surrogates escaped (``\\n``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class NanoError(Exception):
    """Base class of the framework's errors."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a workflow file, with file, line and step where known.

    Printed as one line: control characters from the file (a newline in a step name, a
    terminal escape) are shown escaped.
    """

    message: str
    file: str = "<workflow>"
    line: int | None = None
    step: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: "
        if self.step:
            text += f"step '{self.step}': "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return one_line(text)


class WorkflowError(NanoError):
    """A workflow that cannot be loaded or compiled; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UnknownNodeError(NanoError, KeyError):
    """A node name that no registered node answers to."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        from difflib import get_close_matches

        close = get_close_matches(self.name, self.known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown node '{self.name}'{hint} (known: {', '.join(sorted(self.known))})"


class NodeError(NanoError):
    """Raised by a node to fail a step with a message; retried per the step's policy."""


class NonRetryableError(NodeError):
    """A failure that retrying cannot fix (bad input, bad config): goes straight to errors."""


class InvalidMessageError(NonRetryableError):
    """A message the engine cannot process: not JSON, wrong schema, bad execution id."""


class RoutingError(NonRetryableError):
    """A node chose a route its step does not have, or none where one is required."""
