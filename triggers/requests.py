"""NATS request/reply: a request to ``nano._request.<workflow>`` starts an execution and
gets its outcome as the reply.

A request to a subject a stream captures gets the stream's PubAck as its reply, so results
cannot come back that way; ``nano._request.<wf>`` is captured by no stream, and the bridge
processes serve it in the queue group ``nano-requests`` (one of them answers each request).
The server stores the trigger in JetStream (``Client.run``) before anything runs, so a
bridge that dies mid-request loses nothing: asking again with the same ``Nano-Execution``
returns the stored outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg

from nanoservice import subjects
from nanoservice.nats.client import Client, NoOutcome
from nanoservice.triggers.inputs import schema_problems
from nanoservice.types import EXECUTION, MSG_ID
from nanoservice.workflow.table import RoutingTable

__all__ = ["QUEUE", "STATUS", "TIMEOUT", "RequestServer"]

log = logging.getLogger("nanoservice.triggers.requests")

QUEUE = "nano-requests"
STATUS = "Nano-Status"
"""Reply header: ``ok``, ``failed``, ``timeout``, ``invalid``, ``unavailable``."""
TIMEOUT = "Nano-Timeout"
"""Request header: seconds to wait for the outcome (default 30, at most 3600)."""


class RequestServer:
    """Serves ``nano._request.*`` for the tables ``tables()`` returns."""

    def __init__(
        self, client: Client, tables: Callable[[], list[RoutingTable]], *, max_in_flight: int = 1000
    ) -> None:
        self.client, self.tables, self.max_in_flight = client, tables, max_in_flight
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._validators: dict[str, tuple[str, Any]] = {}

    async def start(self) -> None:
        self._sub = await self.client.nc.subscribe(
            f"{subjects.PREFIX}.{subjects.REQUEST}.*", queue=QUEUE, cb=self._on_msg
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:
            log.warning("request on %s without a reply subject ignored", msg.subject)
            return
        if len(self._tasks) >= self.max_in_flight:
            await self._reply(msg, "unavailable", {"error": "overloaded; try again"})
            return
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        workflow = msg.subject.rsplit(".", 1)[-1]
        table = next((t for t in self.tables() if t.workflow == workflow), None)
        if table is None:
            await self._reply(msg, "invalid", {"error": f"no workflow '{workflow}'"})
            return
        headers = msg.headers or {}
        execution = headers.get(EXECUTION) or _from_msg_id(headers.get(MSG_ID))
        if execution is not None and not subjects.is_valid_token(execution):
            await self._reply(msg, "invalid", {"error": f"invalid execution id {execution!r}"})
            return
        try:
            payload = msgspec.json.decode(msg.data) if msg.data else {}
        except msgspec.DecodeError as exc:
            await self._reply(msg, "invalid", {"error": f"malformed JSON: {exc}"})
            return
        if table.input_schema is not None:
            problems = schema_problems(self._validator(table), payload)
            if problems:
                first = problems[0]
                await self._reply(
                    msg,
                    "invalid",
                    {
                        "error": f"input field '{first.field or '(input)'}': {first.problem}",
                        "problems": [{"field": p.field, "problem": p.problem} for p in problems],
                    },
                )
                return
        try:
            timeout = min(float(headers.get(TIMEOUT, 30)), 3600.0)
        except ValueError:
            await self._reply(msg, "invalid", {"error": f"{TIMEOUT} must be a number of seconds"})
            return
        try:
            outcome = await self.client.run(workflow, payload, timeout=timeout, execution=execution)
        except NoOutcome as exc:
            await self._reply(
                msg, "timeout", {"error": str(exc), "execution": exc.execution}, exc.execution
            )
            return
        except Exception as exc:
            await self._reply(msg, "unavailable", {"error": f"cannot start {workflow}: {exc}"})
            return
        if outcome.ok:
            await self._reply(msg, "ok", outcome.output, outcome.execution)
        else:
            body = {"error": "the execution failed", "step": outcome.step, "detail": outcome.error}
            await self._reply(msg, "failed", body, outcome.execution)

    def _validator(self, table: RoutingTable) -> Any:
        cached = self._validators.get(table.workflow)
        if cached is None or cached[0] != table.revision:
            import jsonschema

            cached = (table.revision, jsonschema.Draft202012Validator(table.input_schema or {}))
            self._validators[table.workflow] = cached
        return cached[1]

    async def _reply(self, msg: Msg, status: str, body: Any, execution: str | None = None) -> None:
        headers = {STATUS: status}
        if execution is not None:
            headers[EXECUTION] = execution
        with contextlib.suppress(Exception):  # the requester may be gone
            await self.client.nc.publish(msg.reply, msgspec.json.encode(body), headers=headers)


def _from_msg_id(msg_id: str | None) -> str | None:
    """A request's ``Nats-Msg-Id`` as the execution id, when it is a valid one."""
    return msg_id if msg_id and subjects.is_valid_token(msg_id) else None
