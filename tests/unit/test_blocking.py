"""Plain `def` nodes run in a worker thread, so blocking code cannot freeze the event loop.

Each test's node signals that it started, then blocks (a real blocking wait) until the
event loop releases it. On the loop the release could never run while the node blocks:
the node's wait would run out and it would report ``released: False``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from nanoservice.sdk.node import Context, NoConfig, Node, node
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.compiler import compile_text

BOUND = 10.0  # how long a node waits for the loop: a bound, never an expected time


class Gate:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.go = threading.Event()

    def block(self) -> dict[str, Any]:
        """What the node does: blocking, like `time.sleep` or a blocking client."""
        self.started.set()
        return {"released": self.go.wait(BOUND), "thread": threading.current_thread().name}

    async def release_from_the_loop(self) -> None:
        """Runs on the event loop: only possible while the node blocks if it is not on the loop."""
        await asyncio.to_thread(self.started.wait, BOUND)
        self.go.set()


def ctx() -> Context:
    return Context(execution_id="e1", workflow="w", step="s")


async def test_def_function_node_runs_in_a_thread() -> None:
    gate = Gate()

    @node("blocking")
    def blocking(ctx: Context, input: Any) -> dict[str, Any]:
        return gate.block()

    inst = blocking.build({})
    out, _ = await asyncio.gather(inst.handle(ctx(), None), gate.release_from_the_loop())
    assert out["released"] is True
    assert out["thread"] != threading.main_thread().name


async def test_def_handle_of_a_class_node_runs_in_a_thread() -> None:
    gate = Gate()

    class Blocking(Node[dict, dict, NoConfig]):
        name = "blocking"

        def handle(self, ctx: Context, input: dict) -> dict:
            return {**gate.block(), "got": input}

    node_type = Registry([Blocking]).get("blocking")
    assert node_type.input_type is dict and node_type.output_type is dict
    inst = node_type.build({})
    out, _ = await asyncio.gather(inst.handle(ctx(), {"a": 1}), gate.release_from_the_loop())
    assert out["released"] is True and out["got"] == {"a": 1}


async def test_def_node_on_the_memory_bus_leaves_the_loop_free() -> None:
    gate = Gate()

    @node("blocking")
    def blocking(ctx: Context, input: dict[str, Any], config: NoConfig) -> dict[str, Any]:
        ctx.choose("next")
        return {"released": gate.block()["released"], "n": input["n"]}

    workflow = "name: blocks\nsteps:\n  wait: {node: blocking, routes: {next: [done]}}\n"
    workflow += "  done: {node: log}\n"
    registry = Registry.discover().copy()
    registry.add(blocking)
    bus = MemoryBus()
    async with bus.hosting([compile_text(workflow, registry)], registry):
        outcome, _ = await asyncio.gather(bus.run("blocks", {"n": 1}), gate.release_from_the_loop())
    assert outcome.ok and outcome.output == {"released": True, "n": 1}


def test_pure_nodes_must_be_async() -> None:
    with pytest.raises(TypeError, match="pure=True"):

        @node("p", pure=True)
        def p(ctx: Context, input: Any) -> Any:
            return input

    with pytest.raises(TypeError, match="pure node needs `async def handle`"):

        class P(Node[dict, dict, NoConfig]):
            name = "p"
            pure = True

            def handle(self, ctx: Context, input: dict) -> dict:
                return input
