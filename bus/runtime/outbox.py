"""The messages a step sends: to its targets, its result, a caller's return, dead paths and
dead letters. Building them is all this module does; the settler stores them."""

from __future__ import annotations

from typing import Any

import msgspec

from nanoservice import subjects
from nanoservice.runtime.decision import Outbound
from nanoservice.runtime.envelope import DeadLetter, Envelope, ErrorInfo, Result, encode, msg_id
from nanoservice.runtime.routing import Plan, dead_branches
from nanoservice.runtime.step import CompiledStep
from nanoservice.types import (
    ATTEMPT,
    ERROR,
    EXECUTION,
    EXPECTED_LAST_SUBJECT_SEQ,
    MSG_ID,
    RETURN,
    REVISION,
    ROUTE,
    SKIP,
    STEP,
    TRACEPARENT,
    TRACESTATE,
    WORKFLOW,
    Delivery,
    Headers,
)

__all__ = ["DLQ_DATA_LIMIT", "ERROR_LIMIT", "Outbox"]

DLQ_DATA_LIMIT = 64 * 1024
"""Bytes of the failed message a dead letter embeds; beyond, a preview and the stream seq."""
ERROR_LIMIT = 2048
"""Characters of an error message kept (a schema error can repeat a whole payload)."""


def clip(text: str, limit: int = ERROR_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class Outbox:
    """Builds one step's outgoing messages."""

    def __init__(self, step: CompiledStep) -> None:
        self.step = step

    def headers(self, delivery: Delivery) -> dict[str, str]:
        """Headers of a step-to-step message (execution and workflow are in the subject)."""
        step = self.step
        headers = {STEP: step.name, REVISION: step.revision}
        incoming = delivery.headers
        trace = incoming.get(TRACEPARENT)
        if trace:
            headers[TRACEPARENT] = trace
            state = incoming.get(TRACESTATE)
            if state:
                headers[TRACESTATE] = state
        if delivery.delivered > 1:
            headers[ATTEMPT] = str(delivery.delivered)
        return headers

    def forward(
        self, delivery: Delivery, execution: str, plan: Plan, output: Any
    ) -> list[Outbound]:
        """The output to the plan's targets (or the result, at the end), plus dead paths."""
        step, env = self.step, plan.env
        headers = self.headers(delivery)
        if plan.routes:
            headers[ROUTE] = ",".join(plan.routes)
        out: list[Outbound] = []
        if plan.targets:
            data = encode(
                Envelope(
                    input=env.input if step.step.keep_input else None,
                    prev=output,
                    steps=step.carry(env, output),
                    vars=env.vars,
                    loops=env.loops,
                    parent=env.parent,
                    parent_revision=env.parent_revision,
                )
            )
            table = step.table.steps
            for target in plan.targets:
                out.append(
                    Outbound(
                        table[target].subject + "." + execution,
                        data,
                        {**headers, MSG_ID: msg_id(execution, step.name, target, env.loops)},
                    )
                )
        else:
            out += self.result(execution, env, output, headers)
        if plan.untaken:
            out += self.skips(execution, env, plan.targets, plan.untaken)
        return out

    def result(
        self, execution: str, env: Envelope, output: Any, headers: dict[str, str]
    ) -> list[Outbound]:
        """The execution's result (one per execution, whatever the de-dup window)."""
        step = self.step
        result = output
        if step.output_expr is not None:
            scope = step.scope(execution, env)
            scope["steps"] = {**env.steps, step.name: {"output": output}}
            scope["prev"] = output
            result = step.output_expr.evaluate(scope)
        body = encode(Result(output=result, step=step.name))
        done = {
            **headers,
            EXECUTION: execution,
            WORKFLOW: step.workflow,
            MSG_ID: msg_id(execution, step.name, subjects.DONE),
            EXPECTED_LAST_SUBJECT_SEQ: "0",  # the subject must still be empty
        }
        out = [Outbound(subjects.done_subject(step.workflow, execution), body, done)]
        if env.parent:
            back = {
                **headers,
                EXECUTION: execution,
                WORKFLOW: step.workflow,
                RETURN: execution,
                MSG_ID: f"{execution}:{subjects.DONE}:return",
            }
            out.append(Outbound(env.parent, body, _caller_revision(back, env)))
        return out

    def skips(
        self, execution: str, env: Envelope, taken: list[str], untaken: list[str]
    ) -> list[Outbound]:
        """Tell joins downstream which of their branches will not come."""
        step = self.step
        return [
            Outbound(
                step.table.steps[join].subject + "." + execution,
                b"",
                {
                    EXECUTION: execution,
                    WORKFLOW: step.workflow,
                    STEP: branch,
                    SKIP: branch,
                    REVISION: step.revision,
                    MSG_ID: msg_id(execution, branch, join, env.loops) + ":skip",
                },
            )
            for join, branch in dead_branches(step, taken, untaken)
        ]

    def dead_letter(
        self,
        delivery: Delivery,
        execution: str,
        env: Envelope | None,
        error: ErrorInfo,
        id_suffix: str | None = None,
    ) -> list[Outbound]:
        """The failure, with the failed message (subject, headers, body) to re-drive it."""
        step = self.step
        if not subjects.is_valid_token(execution):
            execution = f"s{delivery.stream_seq}"
        error = ErrorInfo(type=error.type, message=clip(error.message))
        raw = delivery.data
        truncated = len(raw) > DLQ_DATA_LIMIT
        data: Any
        if truncated:
            data = raw[:1024].decode("utf-8", "replace")
        else:
            try:
                data = msgspec.json.decode(raw) if raw else None
            except msgspec.DecodeError:
                data = raw.decode("utf-8", "replace")
        body = encode(
            DeadLetter(
                step=step.name,
                error=error,
                attempts=delivery.delivered,
                subject=delivery.subject,
                data=data,
                headers=_plain(delivery.headers),
                stream_seq=delivery.stream_seq,
                truncated=truncated,
            )
        )
        headers = {
            EXECUTION: execution,
            WORKFLOW: step.workflow,
            STEP: step.name,
            REVISION: step.revision,
            ERROR: clip(f"{error.type}: {error.message}", 512),
            MSG_ID: id_suffix or msg_id(execution, step.name, subjects.DLQ) + _redrive(delivery),
        }
        out = [Outbound(subjects.dlq_subject(step.workflow, execution), body, headers)]
        if env is not None and env.parent:
            back = {**headers, RETURN: execution, MSG_ID: f"{execution}:{subjects.DLQ}:return"}
            out.append(Outbound(env.parent, body, _caller_revision(back, env)))
        return out


def _caller_revision(headers: dict[str, str], env: Envelope) -> dict[str, str]:
    """A return runs on the caller's revision, not the child's."""
    if env.parent_revision:
        headers[REVISION] = env.parent_revision
    else:
        headers.pop(REVISION, None)
    return headers


def _redrive(delivery: Delivery) -> str:
    """``:retryN`` of a re-driven dead letter (``nano dlq retry``), so its own failure is not
    dropped as a duplicate of the first dead letter."""
    _, sep, tail = str(delivery.headers.get(MSG_ID, "")).rpartition(":retry")
    return f":retry{tail}" if sep and tail.isdigit() else ""


def _plain(headers: Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if isinstance(v, str)}
