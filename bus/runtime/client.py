"""Starting executions and reading their results: what ``nano publish`` and the bridge use."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from nanoservice import subjects
from nanoservice.errors import NanoError
from nanoservice.nats import claims
from nanoservice.runtime.cancel import cancel_execution
from nanoservice.runtime.outcome import ExecutionFailed, Outcome, outcome_of
from nanoservice.types import EXECUTION, MSG_ID

__all__ = ["Client", "ExecutionFailed", "Outcome", "outcome_of"]


class Client:
    """Starts executions on a workflow's trigger subject and waits for their outcome."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    async def start(
        self,
        workflow: str,
        payload: Any,
        *,
        execution: str | None = None,
    ) -> str:
        """Publish a trigger; returns the execution id once the server has stored it."""
        execution = execution or subjects.new_execution_id()
        if not subjects.is_valid_token(execution):
            raise NanoError(f"invalid execution id {execution!r}")
        data = msgspec.json.encode(payload)
        try:
            await claims.publish(  # a body too big for a message travels as a claim check
                self.nc,
                subjects.start_subject(workflow, execution),
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
        return execution

    async def cancel(self, workflow: str, execution: str) -> None:
        """Cancel an execution: hosts drop its pending steps and record it as Cancelled."""
        await cancel_execution(self.js, workflow, execution)

    async def run(
        self, workflow: str, payload: Any, *, timeout: float = 30.0, execution: str | None = None
    ) -> Outcome:
        """Start an execution and wait for its result or dead letter.

        Idempotent for a given ``execution``: if it already ran, its stored outcome is
        returned, and a second start within the de-duplication window is dropped.
        """
        given = execution is not None
        execution = execution or subjects.new_execution_id()
        waiter = await self._watch(workflow, execution)
        try:
            if given:
                stored = await self._stored(workflow, execution)
                if stored is not None:
                    return stored
            await self.start(workflow, payload, execution=execution)
            return await asyncio.wait_for(waiter.outcome, timeout)
        finally:
            await waiter.close()

    async def outcome(self, workflow: str, execution: str, *, timeout: float = 30.0) -> Outcome:
        """Wait for the outcome of an execution that may already have finished."""
        waiter = await self._watch(workflow, execution)
        try:
            stored = await self._stored(workflow, execution)
            if stored is not None:
                return stored
            return await asyncio.wait_for(waiter.outcome, timeout)
        finally:
            await waiter.close()

    async def _stored(self, workflow: str, execution: str) -> Outcome | None:
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

    async def _watch(self, workflow: str, execution: str) -> _Waiter:
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
