"""Structured logs: every line logged while a step handles a message carries the
execution, workflow, step and attempt (engine lines and ``ctx.log`` lines alike).

:class:`LogContext` (middleware) puts the four fields in a context variable for the time a
delivery is handled; :class:`ContextFilter` copies them onto each record a handler emits;
:class:`JsonFormatter` writes one JSON object per line, :class:`TextFormatter` appends
``[workflow/step execution #attempt]``. :func:`setup_logging` installs both on stderr.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

from nanoservice.observe.where import execution_of
from nanoservice.runtime.decision import Decision
from nanoservice.runtime.middleware import MessageCall, Middleware
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import Delivery

__all__ = [
    "FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "LogContext",
    "LogFormat",
    "TextFormatter",
    "current",
    "setup_logging",
]

LogFormat = Literal["text", "json"]
FIELDS = ("workflow", "step", "execution", "attempt")
"""The fields every line logged while a message is handled carries."""

_current: contextvars.ContextVar[tuple[str, str, str, int] | None] = contextvars.ContextVar(
    "nano_log_context", default=None
)


def current() -> dict[str, Any]:
    """The fields of the message being handled here (empty outside one)."""
    now = _current.get()
    return {} if now is None else dict(zip(FIELDS, now, strict=True))


class LogContext(Middleware):
    """Sets the log fields for the time one delivery is handled (node call included)."""

    async def message(
        self, step: CompiledStep, delivery: Delivery, call_next: MessageCall
    ) -> Decision:
        token = _current.set(
            (step.workflow, step.name, execution_of(step, delivery), delivery.delivered)
        )
        try:
            return await call_next(delivery)
        finally:
            _current.reset(token)


class ContextFilter(logging.Filter):
    """Adds the fields of the message being handled to records that lack them (a record
    from ``ctx.log`` has workflow, step and execution already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        now = _current.get()
        if now is not None:
            values = record.__dict__
            for name, value in zip(FIELDS, now, strict=True):
                values.setdefault(name, value)
        return True


def _trace_ids() -> tuple[str, str] | None:
    """The current span's trace and span id (hex), when OpenTelemetry is loaded and on."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    ctx = otel.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, the
    trace and span id inside a span, and the error (traceback included) on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        values = record.__dict__
        for name in FIELDS:
            if name in values:
                out[name] = values[name]
        ids = _trace_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual text line, then ``[workflow/step execution #attempt]`` when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        values = record.__dict__
        if "workflow" not in values:
            return line
        where = f"{values['workflow']}/{values.get('step', '')} {values.get('execution', '')}"
        attempt = values.get("attempt")
        tag = f" [{where} #{attempt}]" if attempt is not None else f" [{where}]"
        first, sep, rest = line.partition("\n")  # keep a traceback below the tagged line
        return first + tag + sep + rest


def setup_logging(level: str = "info", fmt: LogFormat = "text") -> logging.Handler:
    """Log to stderr at ``level`` in ``fmt``, the context fields on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_nano", False)]:
        root.removeHandler(old)
    handler._nano = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return handler
