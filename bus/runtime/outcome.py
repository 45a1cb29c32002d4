"""How an execution ended, read from its ``_done`` or ``_dlq`` message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.runtime.envelope import decode_dead_letter, decode_result

__all__ = ["ExecutionFailed", "Outcome", "outcome_of"]


class ExecutionFailed(NanoError):
    """An execution ended in the dead-letter subject."""

    def __init__(self, execution: str, step: str, error_type: str, message: str) -> None:
        self.execution, self.step, self.error_type = execution, step, error_type
        super().__init__(f"execution {execution} failed at step '{step}': {error_type}: {message}")


@dataclass(frozen=True)
class Outcome:
    """How an execution ended: ``ok`` with ``output``, or not with ``error``."""

    execution: str
    ok: bool
    output: Any = None
    step: str = ""
    error: dict[str, Any] | None = None
    earlier: bool = False
    """The execution id had been started before: this is that run's outcome, and the
    payload given to this call was not used."""

    def unwrap(self) -> Any:
        """The output; raises :class:`ExecutionFailed` if the execution failed."""
        if self.ok:
            return self.output
        error = self.error or {}
        raise ExecutionFailed(
            self.execution,
            self.step,
            str(error.get("type", "Error")),
            str(error.get("message", "")),
        )


def outcome_of(execution: str, subject: str, data: bytes) -> Outcome:
    """The outcome a `_done` or `_dlq` message of an execution reports."""
    if f".{subjects.DONE}." in subject:
        result = decode_result(data)
        return Outcome(execution=execution, ok=True, output=result.output, step=result.step)
    dead = decode_dead_letter(data)
    return Outcome(
        execution=execution,
        ok=False,
        step=dead.step,
        error={"type": dead.error.type, "message": dead.error.message, "attempts": dead.attempts},
    )
