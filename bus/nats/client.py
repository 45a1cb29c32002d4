"""Starting executions and reading their results: what ``nano publish`` and the bridge use."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.nats import claims
from nanoservice.nats.cancel import cancel_execution
from nanoservice.nats.results import Results, Watch
from nanoservice.runtime.outcome import ExecutionFailed, Outcome, outcome_of
from nanoservice.types import EXECUTION, MSG_ID

__all__ = [
    "LOST",
    "NOT_STORED",
    "NO_RESULT",
    "Client",
    "ExecutionFailed",
    "NoOutcome",
    "Outcome",
    "outcome_of",
]

_POLL = 1.0
"""Seconds between looks at the stored outcome while waiting (a live message may be missed
during a reconnect)."""


class NoOutcome(TimeoutError):
    """No outcome within the timeout; ``reason`` says what is known about the execution."""

    def __init__(self, execution: str, reason: str) -> None:
        self.execution, self.reason = execution, reason
        super().__init__(f"no outcome of execution {execution}: {reason}")


LOST = "the connection to NATS is lost (reconnecting)"
NOT_STORED = "the trigger was not stored"
NO_RESULT = "the trigger is stored, but there is no result yet"


class Client:
    """Starts executions on a workflow's trigger subject and waits for their outcome."""

    def __init__(self, nc: NATS, *, results: Results | None = None) -> None:
        """``results``: wait through the process's shared subscriptions (started) instead of
        subscribing for each wait."""
        self.nc = nc
        self.js = nc.jetstream()
        self.results = results

    async def start(
        self,
        workflow: str,
        payload: Any,
        *,
        execution: str | None = None,
        subject: str | None = None,
    ) -> str:
        """Publish a trigger; returns the execution id once the server has stored it.

        ``subject`` is one of the workflow's declared trigger subjects (default: its own
        ``_start`` subject); the execution id travels in the ``Nano-Execution`` header.
        """
        return (await self.trigger(workflow, payload, execution=execution, subject=subject))[0]

    async def trigger(
        self,
        workflow: str,
        payload: Any,
        *,
        execution: str | None = None,
        subject: str | None = None,
    ) -> tuple[str, bool]:
        """As :meth:`start`; also whether the server had this execution's trigger already
        (a duplicate within the stream's de-duplication window: this payload was dropped)."""
        execution = execution or subjects.new_execution_id()
        if not subjects.is_valid_token(execution):
            raise NanoError(f"invalid execution id {execution!r}")
        data = msgspec.json.encode(payload)
        try:
            ack = await claims.publish(  # a body too big for a message travels as a claim
                self.nc,
                subject or subjects.start_subject(workflow, execution),
                data,
                {EXECUTION: execution, MSG_ID: f"{execution}:_start"},
            )
        except Exception as exc:
            if "no responders" in str(exc).lower() or type(exc).__name__ == "NoRespondersError":
                raise NanoError(
                    f"workflow '{workflow}' is not provisioned on this server "
                    "(run `nano up`, or check the name)"
                ) from None
            raise
        return execution, bool(ack.duplicate)

    async def cancel(self, workflow: str, execution: str) -> None:
        """Cancel an execution: hosts drop its pending steps and record it as Cancelled."""
        await cancel_execution(self.js, workflow, execution)

    async def run(
        self,
        workflow: str,
        payload: Any,
        *,
        timeout: float = 30.0,
        execution: str | None = None,
        subject: str | None = None,
    ) -> Outcome:
        """Start an execution and wait for its result or dead letter.

        Idempotent for a given ``execution``: if it already ran, its stored outcome is
        returned, and a second start within the de-duplication window is dropped.
        """
        given = execution is not None
        execution = execution or subjects.new_execution_id()
        if not subjects.is_valid_token(execution):
            raise NanoError(f"invalid execution id {execution!r}")
        waiter = await self._watch(workflow, execution)
        try:
            if given:
                stored = await self._stored_now(workflow, execution)
                if stored is not None:
                    return replace(stored, earlier=True)
            duplicate, acked = False, True
            try:
                _, duplicate = await self.trigger(
                    workflow, payload, execution=execution, subject=subject
                )
            except TimeoutError:  # no PubAck: stored or not, the server did not say
                acked = False
                if self.nc.is_connected and not await self._trigger_stored(workflow, execution):
                    raise NoOutcome(execution, f"{NOT_STORED} (no acknowledgement)") from None
            outcome = await self._await(workflow, execution, waiter, timeout, acked=acked)
            return replace(outcome, earlier=duplicate)
        finally:
            await waiter.close()

    async def outcome(self, workflow: str, execution: str, *, timeout: float = 30.0) -> Outcome:
        """Wait for the outcome of an execution that may already have finished."""
        waiter = await self._watch(workflow, execution)
        try:
            stored = await self._stored_now(workflow, execution)
            if stored is not None:
                return stored
            return await self._await(workflow, execution, waiter, timeout)
        finally:
            await waiter.close()

    async def _await(
        self,
        workflow: str,
        execution: str,
        waiter: _Waiter | Watch,
        timeout: float,
        *,
        acked: bool = False,
    ) -> Outcome:
        """The live outcome, or the stored one (looked up every second while connected)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(waiter.outcome), min(left, _POLL))
            if self.nc.is_connected:
                with contextlib.suppress(Exception):
                    stored = await asyncio.wait_for(self.stored(workflow, execution), _POLL)
                    if stored is not None:
                        return stored
        raise NoOutcome(execution, await self._why(workflow, execution, acked))

    async def _why(self, workflow: str, execution: str, acked: bool) -> str:
        """What is known of an execution without an outcome (``acked``: its trigger was)."""
        if not self.nc.is_connected:
            return LOST
        if acked:
            return NO_RESULT
        try:
            stored = await asyncio.wait_for(self._trigger_stored(workflow, execution), 5)
        except Exception as exc:
            return f"cannot ask the server ({exc or type(exc).__name__})"
        return NO_RESULT if stored else NOT_STORED

    async def started(self, workflow: str, execution: str) -> bool:
        """Whether the execution's trigger (on its ``_start`` subject) is stored."""
        return await self._trigger_stored(workflow, execution)

    async def _trigger_stored(self, workflow: str, execution: str) -> bool:
        try:
            await self.js.get_last_msg(
                subjects.stream_name(workflow), subjects.start_subject(workflow, execution)
            )
        except NotFoundError:
            return False
        return True

    async def _stored_now(self, workflow: str, execution: str) -> Outcome | None:
        """:meth:`stored`, or None while the server cannot answer (a stream-leader
        election, a reconnect): the wait that follows keeps looking."""
        try:
            return await self.stored(workflow, execution)
        except TimeoutError:  # nats-py's timeout is one too
            return None

    async def stored(self, workflow: str, execution: str) -> Outcome | None:
        """The stored outcome of an execution (its `_done` or `_dlq` message), if any."""
        stream = subjects.stream_name(workflow)
        for subject in (
            subjects.done_subject(workflow, execution),
            subjects.dlq_subject(workflow, execution),
        ):
            try:
                msg = await self.js.get_last_msg(stream, subject)
            except NotFoundError:
                continue
            return outcome_of(
                execution, subject, await claims.body_of(self.nc, msg.headers, msg.data or b"")
            )
        return None

    async def _watch(self, workflow: str, execution: str) -> _Waiter | Watch:
        if self.results is not None:
            return self.results.watch(workflow, execution)
        waiter = _Waiter(execution, self.nc)
        for subject in (
            subjects.done_subject(workflow, execution),
            subjects.dlq_subject(workflow, execution),
        ):
            waiter.subs.append(await self.nc.subscribe(subject, cb=waiter.on_msg))
        await self.nc.flush()
        return waiter


class _Waiter:
    def __init__(self, execution: str, nc: NATS) -> None:
        self.execution, self.nc = execution, nc
        self.outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.subs: list[Any] = []

    async def on_msg(self, msg: Msg) -> None:
        if not self.outcome.done():
            data = await claims.body_of(self.nc, msg.headers, msg.data)
            if not self.outcome.done():
                self.outcome.set_result(outcome_of(self.execution, msg.subject, data))

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
