"""Middleware: the one extension point around handling a message and around calling a node.

A middleware subclasses :class:`Middleware` and overrides one or both hooks; each hook
receives what is being handled and ``call_next``, and must call it (or decide otherwise).
Chains are assembled once per step when a host starts, so a step without middleware pays
nothing, and one with middleware pays a chain of direct calls::

    class Timing(Middleware):
        async def node(self, call: Invocation, call_next: NodeCall) -> Any:
            started = time.perf_counter()
            try:
                return await call_next(call)
            finally:
                print(call.step, time.perf_counter() - started)

Metrics, tracing and structured logging plug in here; the runtime does not know them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from nanoservice.runtime.decision import Decision
from nanoservice.sdk.node import Context
from nanoservice.types import Delivery, Headers

if TYPE_CHECKING:
    from nanoservice.runtime.step import CompiledStep

__all__ = [
    "Invocation",
    "MessageCall",
    "Middleware",
    "NodeCall",
    "chain_messages",
    "chain_nodes",
]


@dataclass(slots=True)
class Invocation:
    """One call of a node: where, for which execution, with what input."""

    step: CompiledStep
    execution: str
    attempt: int
    ctx: Context
    input: Any
    headers: Headers

    @property
    def workflow(self) -> str:
        return self.step.workflow

    @property
    def node(self) -> str:
        return self.step.step.node or ""


NodeCall: TypeAlias = Callable[[Invocation], Awaitable[Any]]
MessageCall: TypeAlias = Callable[[Delivery], Awaitable[Decision]]


class Middleware:
    """Base class of middleware; the default hooks just pass on."""

    def setup(self, step: CompiledStep) -> None:
        """Called once per step a host runs, before its first message (e.g. make labels)."""

    async def message(
        self, step: CompiledStep, delivery: Delivery, call_next: MessageCall
    ) -> Decision:
        """Around handling one delivery: returns the decision the settler will carry out."""
        return await call_next(delivery)

    async def node(self, call: Invocation, call_next: NodeCall) -> Any:
        """Around one node call: returns the node's output (or raises its error)."""
        return await call_next(call)


def _overrides(mw: Middleware, hook: str) -> bool:
    return getattr(type(mw), hook) is not getattr(Middleware, hook)


def chain_nodes(middleware: Sequence[Middleware], last: NodeCall) -> NodeCall:
    """``last`` wrapped by every middleware that has a ``node`` hook (first is outermost)."""
    call = last
    for mw in reversed([m for m in middleware if _overrides(m, "node")]):
        call = _bind_node(mw, call)
    return call


def _bind_node(mw: Middleware, call_next: NodeCall) -> NodeCall:
    def call(invocation: Invocation) -> Awaitable[Any]:
        return mw.node(invocation, call_next)

    return call


def chain_messages(
    middleware: Sequence[Middleware], step: CompiledStep, last: MessageCall
) -> MessageCall:
    """``last`` wrapped by every middleware that has a ``message`` hook."""
    call = last
    for mw in reversed([m for m in middleware if _overrides(m, "message")]):
        call = _bind_message(mw, step, call)
    return call


def _bind_message(mw: Middleware, step: CompiledStep, call_next: MessageCall) -> MessageCall:
    def call(delivery: Delivery) -> Awaitable[Decision]:
        return mw.message(step, delivery, call_next)

    return call
