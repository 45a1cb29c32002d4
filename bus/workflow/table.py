"""The routing table: a compiled workflow as plain, versioned data.

This is what hosts execute and what is stored in the ``nano_tables`` KV bucket. It can be
printed, diffed, drawn and read by a node host written in any language (see
docs/protocol.md). Nothing here refers to Python node classes or to NATS objects.
"""

from __future__ import annotations

from typing import Any

import msgspec

from nanoservice.workflow import dataflow

__all__ = [
    "FORMAT",
    "CallRoute",
    "ForEachRoute",
    "HttpRoute",
    "JoinRoute",
    "LoopRoute",
    "RetryRoute",
    "Route",
    "RoutingTable",
    "ScheduleRoute",
    "StepRoute",
    "StreamSettings",
]

FORMAT = 1
"""Version of the table's shape; bumped on any incompatible change."""


class RetryRoute(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int
    backoff: list[float]
    retry_on: list[str] | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(attempt - 1, len(self.backoff) - 1)]


class Route(msgspec.Struct, frozen=True, kw_only=True):
    to: list[str]
    when: str | None = None


class JoinRoute(msgspec.Struct, frozen=True, kw_only=True):
    steps: list[str]
    mode: str = "all"
    timeout: float | None = None
    on_timeout: list[str] = []


class LoopRoute(msgspec.Struct, frozen=True, kw_only=True):
    until: str
    max: int
    back_to: str
    on_max: str = "fail"


class CallRoute(msgspec.Struct, frozen=True, kw_only=True):
    workflow: str
    wait: bool = True


class ForEachRoute(msgspec.Struct, frozen=True, kw_only=True):
    items: str
    concurrency: int = 8
    on_item_error: str = "fail"


class StepRoute(msgspec.Struct, frozen=True, kw_only=True):
    """One step: its node, subjects and where its output goes."""

    name: str
    node: str | None
    config: dict[str, Any]
    subject: str
    """Input subject prefix; a message for execution E arrives on ``<subject>.E``."""
    consumer: str
    filter_subjects: list[str]
    input: str | None = None
    next: list[str] = []
    routes: dict[str, Route] = {}
    choose: str = "first"
    default: list[str] = []
    on_error: list[str] = []
    join: JoinRoute | None = None
    loop: LoopRoute | None = None
    call: CallRoute | None = None
    for_each: ForEachRoute | None = None
    set_vars: dict[str, str] = {}
    retry: RetryRoute
    timeout: float
    ack_wait: float
    concurrency: int
    keep: list[str] | None = None
    """Step outputs to carry onward (None = all): only what later steps reference."""
    keep_input: bool = True
    """Whether messages leaving this step carry the trigger payload (later steps read it)."""
    runtime: str | None = None
    """Set when a host of another runtime serves the step: Python hosts skip it."""

    @property
    def terminal(self) -> bool:
        return not self.next and not self.routes and not self.default

    def successors(self) -> list[str]:
        """Every step this one can send to (routes, default, error routes, join timeout)."""
        return dataflow.successors(self)


class HttpRoute(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP route of the bridge (``trigger.http``)."""

    method: str
    path: str
    mode: str = "sync"
    timeout: float = 30.0
    headers: list[str] = []
    response: str = "output"
    output_schema: dict[str, Any] | None = None


class ScheduleRoute(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule (``trigger.schedules``): ``cron`` or ``every`` seconds, UTC."""

    name: str
    cron: str | None = None
    every: float | None = None
    missed: str = "skip"
    max_catch_up: int = 10
    input: dict[str, Any] = {}


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    subjects: list[str]
    max_age: float
    max_bytes: int
    replicas: int
    duplicate_window: float


class RoutingTable(msgspec.Struct, frozen=True, kw_only=True):
    """A compiled workflow."""

    format: int = FORMAT
    workflow: str
    revision: str
    """Content hash of the spec: two tables with one revision behave the same."""
    source: str
    stream: StreamSettings
    start: list[str]
    start_subject: str
    """Prefix of the workflow's own trigger subject (``<start_subject>.<execution>``)."""
    triggers: list[str]
    http: list[HttpRoute] = []
    schedules: list[ScheduleRoute] = []
    input_schema: dict[str, Any] | None = None
    vars: dict[str, Any] = {}
    output: str | None = None
    steps: dict[str, StepRoute]

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> RoutingTable:
        table = msgspec.json.decode(data, type=cls)
        if table.format != FORMAT:
            raise ValueError(f"routing table format {table.format} is not {FORMAT}")
        return table

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]
