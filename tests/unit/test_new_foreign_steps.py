"""Steps served by another runtime: compiled without the node, skipped by Python hosts."""

from __future__ import annotations

import pytest

from nanoservice.errors import WorkflowError
from nanoservice.runtime.host import select_steps
from nanoservice.sdk.registry import Registry
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.compiler import compile_text

REGISTRY = Registry.discover()
MIXED = """
name: mixed
steps:
  shape:
    node: transform
    with: {expr: '{"text": input.text}'}
    next: count
  count:
    node: word_count
    runtime: node
    with: {lower: true}
    retry: {max_attempts: 2, backoff: [0.1]}
"""


def test_a_foreign_step_compiles_without_its_node_and_python_hosts_skip_it() -> None:
    table = compile_text(MIXED, REGISTRY)
    count = table.steps["count"]
    assert (count.runtime, count.node, count.config) == ("node", "word_count", {"lower": True})
    assert [step.name for _, step in select_steps([table])] == ["shape"]


async def test_a_python_host_leaves_the_foreign_steps_messages_to_its_consumer() -> None:
    table = compile_text(MIXED, REGISTRY)
    bus = MemoryBus()
    async with bus.hosting([table], REGISTRY):
        with pytest.raises(TimeoutError):
            await bus.run("mixed", {"text": "a b"}, timeout=0.3)
    sent = bus.messages("NANO_MIXED", "nano.mixed.count.*")
    assert [data for _, data in sent] == [b'{"prev":{"text":"a b"}}']


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    input: prev\n", "`input` is not served by runtime 'node'"),
        ("    on_error: [shape]\n", "`on_error` is not served by runtime 'node'"),
        ("    set_vars: {a: prev}\n", "`set_vars` is not served by runtime 'node'"),
    ],
)
def test_control_flow_on_a_foreign_step_is_a_compile_error(extra: str, message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        compile_text(MIXED + extra, REGISTRY, file="mixed.yaml")
    assert message in str(caught.value)
    assert "mixed.yaml:" in str(caught.value)


def test_a_foreign_first_or_last_step_with_an_output_expression_is_refused() -> None:
    first = "name: f\nsteps:\n  a: {node: x, runtime: node}\n"
    with pytest.raises(WorkflowError, match="a first step cannot be served"):
        compile_text(first, REGISTRY)
    last = MIXED + "output: prev\n"
    with pytest.raises(WorkflowError, match="the last step cannot be served"):
        compile_text(last, REGISTRY)
