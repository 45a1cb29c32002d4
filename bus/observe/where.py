"""Which execution a delivery belongs to, seen from outside the pipeline (for labels, spans
and log fields): the same answer the pipeline computes, without decoding anything."""

from __future__ import annotations

from nanoservice.runtime.step import CompiledStep
from nanoservice.types import EXECUTION, Delivery

__all__ = ["execution_of", "is_trigger"]


def is_trigger(step: CompiledStep, delivery: Delivery) -> bool:
    """A delivery that starts an execution (``_start`` or a declared trigger subject)."""
    subject = delivery.subject
    if subject.startswith(step.prefix):
        return False
    return subject.startswith(step.start_prefix) or not subject.startswith(
        f"nano.{step.workflow}._timers."
    )


def execution_of(step: CompiledStep, delivery: Delivery) -> str:
    """The execution id: the subject's last token, or a trigger's header or stream sequence."""
    subject = delivery.subject
    if subject.startswith(step.prefix):
        return subject[len(step.prefix) :]
    if subject.startswith(step.start_prefix):
        return subject[len(step.start_prefix) :]
    if subject.startswith(f"nano.{step.workflow}._timers."):
        return subject.rpartition(".")[2]
    return delivery.headers.get(EXECUTION) or f"s{delivery.stream_seq}"
