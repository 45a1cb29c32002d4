"""mynode in a one-step workflow on the in-memory bus: config, input and output as a host sees them."""

from __future__ import annotations

from nano_node_mynode import mynode

from nanoservice import Registry, compile_text
from nanoservice.errors import WorkflowError
from nanoservice.testing.memory import MemoryBus

REGISTRY = Registry([mynode])
FLOW = """
name: count
steps:
  count:
    node: mynode
    with: {lower: true}
"""


async def test_counts_words_and_finds_the_top_one() -> None:
    bus = MemoryBus()
    async with bus.hosting([compile_text(FLOW, REGISTRY)], REGISTRY):
        outcome = await bus.run("count", {"text": "The cat saw the dog"})
    assert outcome.ok, outcome
    assert outcome.output == {"words": 5, "top": "the"}


async def test_input_without_text_fails_without_retries() -> None:
    bus = MemoryBus()
    async with bus.hosting([compile_text(FLOW, REGISTRY)], REGISTRY):
        outcome = await bus.run("count", {"body": "no text"})
    assert not outcome.ok
    assert "text" in str(outcome.error)


def test_an_unknown_config_key_is_a_compile_error() -> None:
    try:
        compile_text(FLOW.replace("lower: true", "upper: true"), REGISTRY)
    except WorkflowError as exc:
        assert "upper" in str(exc)
    else:
        raise AssertionError("an unknown config key compiled")
