"""The fixed scenarios: each a workflow whose step ``echo`` the implementation serves.

A scenario starts executions through the real server and checks what was stored: outcomes,
raw headers and bodies, consumer state. It raises :class:`ScenarioFailed` saying what differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nats.js.client import JetStreamContext

from nanoservice.nats.client import Client, Outcome

__all__ = ["SCENARIOS", "WORKFLOWS", "Scenario", "ScenarioFailed", "World"]

STEP = "echo"
_HEAD = "steps:\n  shape: {node: transform, with: {expr: input}, next: echo}\n"
WORKFLOWS: dict[str, str] = {
    "results": _HEAD + "  echo: {node: conformance_echo, runtime: node}\n",
    "routes": _HEAD + "  echo: {node: conformance_echo, runtime: node, next: [left, right]}\n"
    '  left: {node: transform, with: {expr: \'{"tag": prev.echo.tag, "shape": '
    "steps.shape.output.tag}'}, next: both}\n"
    "  right: {node: transform, with: {expr: '{\"attempt\": prev.attempt}'}, next: both}\n"
    "  both: {node: transform, join: [left, right], with: {expr: prev}}\n",
    "retries": _HEAD + "  echo: {node: conformance_echo, runtime: node, next: after,\n"
    "         retry: {max_attempts: 3, backoff: [0.2, 0.4]}}\n"
    "  after: {node: transform, with: {expr: prev}}\n",
    "deadletters": _HEAD
    + "  echo: {node: conformance_echo, runtime: node, retry: {max_attempts: 2, backoff: [0.1]}}\n",
    "heartbeats": _HEAD
    + "  echo: {node: conformance_echo, runtime: node, timeout: 10, ack_wait: 2}\n",
    "redelivery": _HEAD
    + "  echo: {node: conformance_echo, runtime: node, timeout: 20, ack_wait: 2}\n",
}
"""Scenario name -> workflow body (its name is ``conf-<scenario>``)."""


class ScenarioFailed(AssertionError):
    """What the implementation did differently, in one line."""


class Implementation(Protocol):
    def kill(self) -> None: ...
    def start(self) -> None: ...
    async def ready(self) -> None: ...


@dataclass
class World:
    """What a scenario can use: the server (JetStream), a client, the implementation."""

    js: JetStreamContext
    client: Client
    impl: Implementation
    revisions: dict[str, str]

    async def run(self, scenario: str, payload: Any, execution: str) -> Outcome:
        return await self.client.run(f"conf-{scenario}", payload, execution=execution, timeout=30)

    async def stored(self, scenario: str, subject_kind: str, execution: str) -> Any:
        stream = f"NANO_CONF_{scenario.upper()}"
        return await self.js.get_last_msg(
            stream, f"nano.conf-{scenario}.{subject_kind}.{execution}"
        )


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ScenarioFailed(message)


def expect_headers(got: dict[str, str] | None, want: dict[str, str], where: str) -> None:
    got = got or {}
    wrong = {k: got.get(k) for k, v in want.items() if got.get(k) != v}
    check(not wrong, f"{where}: headers {wrong} (want {want})")


async def results(w: World) -> None:
    outcome = await w.run("results", {"tag": "r1"}, "x1")
    check(outcome.ok, f"no result: {outcome.error}")
    check(outcome.output == {"echo": {"tag": "r1"}, "attempt": 1}, f"result {outcome.output}")
    check(outcome.step == STEP, f"result names step {outcome.step!r}")
    msg = await w.stored("results", "_done", "x1")
    expect_headers(
        msg.headers,
        {
            "Nano-Step": STEP,
            "Nano-Revision": w.revisions["results"],
            "Nano-Execution": "x1",
            "Nano-Workflow": "conf-results",
            "Nats-Msg-Id": "x1:echo:_done",
        },
        "result",
    )


async def routes(w: World) -> None:
    outcome = await w.run("routes", {"tag": "t"}, "x2")
    check(outcome.ok, f"no result: {outcome.error}")
    want = {"left": {"tag": "t", "shape": "t"}, "right": {"attempt": 1}}
    check(outcome.output == want, f"result {outcome.output}, want {want}")
    for target in ("left", "right"):
        msg = await w.stored("routes", target, "x2")
        expect_headers(
            msg.headers,
            {
                "Nano-Step": STEP,
                "Nano-Revision": w.revisions["routes"],
                "Nats-Msg-Id": f"x2:echo:{target}",
            },
            f"message to {target}",
        )


async def retries(w: World) -> None:
    outcome = await w.run("retries", {"fail_until": 3}, "x3")
    check(outcome.ok, f"no result: {outcome.error}")
    check(outcome.output == {"echo": {"fail_until": 3}, "attempt": 3}, f"result {outcome.output}")
    msg = await w.stored("retries", "after", "x3")
    expect_headers(
        msg.headers, {"Nano-Attempt": "3", "Nats-Msg-Id": "x3:echo:after"}, "retried output"
    )


async def deadletters(w: World) -> None:
    outcome = await w.run("deadletters", {"fail_until": 99}, "x4")
    check(not outcome.ok, f"a result instead of a dead letter: {outcome.output}")
    msg = await w.stored("deadletters", "_dlq", "x4")
    expect_headers(
        msg.headers,
        {
            "Nano-Execution": "x4",
            "Nano-Workflow": "conf-deadletters",
            "Nano-Step": STEP,
            "Nats-Msg-Id": "x4:echo:_dlq",
        },
        "dead letter",
    )
    check("Nano-Error" in (msg.headers or {}), "dead letter without Nano-Error")
    import json

    body = json.loads(msg.data)
    check(body.get("attempts") == 2, f"dead letter attempts {body.get('attempts')}, want 2")
    check(body.get("subject") == "nano.conf-deadletters.echo.x4", f"subject {body.get('subject')}")
    check(body.get("data") == {"prev": {"fail_until": 99}}, f"data {body.get('data')}")
    check(body.get("step") == STEP and "type" in body.get("error", {}), f"body {body}")


async def heartbeats(w: World) -> None:
    outcome = await w.run("heartbeats", {"sleep": 4.5}, "x5")
    check(outcome.ok, f"no result: {outcome.error}")
    info = await w.js.consumer_info("NANO_CONF_HEARTBEATS", STEP)
    check(
        info.delivered.consumer_seq == 1,
        f"a 4.5 s node on ack_wait 2 s was delivered {info.delivered.consumer_seq} times "
        "(no in-progress heartbeats?)",
    )


async def redelivery(w: World) -> None:
    run = asyncio.ensure_future(w.run("redelivery", {"sleep": 3}, "x6"))
    for _ in range(200):  # until the implementation holds the message
        info = await w.js.consumer_info("NANO_CONF_REDELIVERY", STEP)
        if info.num_ack_pending:
            break
        await asyncio.sleep(0.05)
    w.impl.kill()
    w.impl.start()
    await w.impl.ready()
    outcome = await run
    check(outcome.ok, f"no result after a kill: {outcome.error}")
    check(outcome.output == {"echo": {"sleep": 3}, "attempt": 2}, f"result {outcome.output}")


Scenario = Callable[[World], Awaitable[None]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "results": ("a node's output is the result, with the protocol's headers", results),
    "routes": ("output goes to every next step, carrying what later steps read", routes),
    "retries": ("a failure is nak'ed with backoff and retried", retries),
    "deadletters": ("spent retries are dead-lettered with the failed message", deadletters),
    "heartbeats": ("a node longer than ack_wait keeps its message (+WPI)", heartbeats),
    "redelivery": ("a message held by a killed host is redelivered and finished", redelivery),
}
