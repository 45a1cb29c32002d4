"""What a failure means for a delivery: retry with backoff, take the error route, or
dead-letter it. One place decides; nothing here settles."""

from __future__ import annotations

import logging
from typing import Any

import jsonschema
import msgspec
from pydantic import ValidationError

from nanoservice.errors import NonRetryableError
from nanoservice.runtime.decision import DeadLetter, Decision, Publish, Retry
from nanoservice.runtime.envelope import Envelope, ErrorInfo
from nanoservice.runtime.outbox import Outbox, clip
from nanoservice.runtime.routing import Plan
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import Delivery
from nanoservice.workflow.expr import ExpressionError

__all__ = ["NOT_RETRYABLE", "FailurePolicy", "UnserializableOutputError"]

log = logging.getLogger("nanoservice.runtime")

NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    NonRetryableError,
    ValidationError,
    ExpressionError,
    msgspec.DecodeError,
    jsonschema.ValidationError,
)
"""Failures that retrying cannot fix: they skip the remaining tries."""


class UnserializableOutputError(NonRetryableError):
    """A node output that cannot be encoded as JSON (see docs/authoring.md)."""


class FailurePolicy:
    """Turns an exception raised while handling a delivery into a decision."""

    def __init__(self, step: CompiledStep, outbox: Outbox) -> None:
        self.step = step
        self.outbox = outbox

    def error_info(self, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, TimeoutError):
            return ErrorInfo("TimeoutError", f"step timed out after {self.step.step.timeout:g} s")
        kind = type(exc).__name__
        return ErrorInfo(kind, str(exc) or kind)

    def decide(
        self, delivery: Delivery, execution: str, env: Envelope | None, exc: BaseException
    ) -> Decision:
        route = self.step.step
        attempt = delivery.delivered
        error = self.error_info(exc)
        retryable = not isinstance(exc, NOT_RETRYABLE) and (
            route.retry.retry_on is None or error.type in route.retry.retry_on
        )
        log.warning(
            "%s/%s execution %s attempt %d failed: %s: %s",
            self.step.workflow,
            route.name,
            execution,
            attempt,
            error.type,
            clip(error.message, 300),
        )
        if retryable and attempt < route.retry.max_attempts:
            return Retry(route.retry.delay(attempt), error)
        if route.on_error and env is not None:
            failure: dict[str, Any] = {
                "error": {"type": error.type, "message": clip(error.message)},
                "step": route.name,
                "input": env.prev,
            }
            untaken = [s for s in route.successors() if s not in route.on_error]
            plan = Plan(list(route.on_error), ["error"], untaken, env)
            try:
                messages = self.outbox.forward(delivery, execution, plan, failure)
            except Exception as encode_exc:  # the failed input cannot travel: dead-letter
                error = ErrorInfo(error.type, f"{error.message} (error route: {encode_exc})")
            else:
                return Publish(messages, outcome="error_route", execution=execution)
        return DeadLetter(error, env, execution)
