"""The compiler: from YAML to routing table, and every problem with file, line and step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from nanoservice.errors import WorkflowError
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.table import RoutingTable


class EchoConfig(BaseModel):
    times: int = 1


@node("echo", config=EchoConfig)
async def echo(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    return input


@node("noop")
async def noop(ctx: Context, input: Any) -> Any:
    return input


REGISTRY = Registry([echo, noop])


def compile_(text: str) -> RoutingTable:
    return compile_text(text, REGISTRY, file="wf.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowError) as info:
        compile_(text)
    return [str(p) for p in info.value.problems]


LINEAR = """\
name: orders
trigger: {subjects: [orders.created]}
input: {type: object, required: [id]}
steps:
  a: {node: echo, next: b}
  b: {node: echo, input: 'prev', next: [c, d]}
  c: {node: noop, input: 'steps.a.output'}
  d: {node: noop}
output: 'steps.b.output'
"""


def test_linear_workflow_compiles_to_subjects_and_consumers() -> None:
    table = compile_(LINEAR)
    assert table.workflow == "orders"
    assert table.stream.name == "NANO_ORDERS"
    assert table.stream.subjects == ["nano.orders.>", "orders.created"]
    assert table.start == ["a"]
    a = table.steps["a"]
    assert a.subject == "nano.orders.a"
    assert a.filter_subjects == ["nano.orders.a.*", "nano.orders._start.*", "orders.created"]
    assert table.steps["b"].filter_subjects == ["nano.orders.b.*"]
    assert table.steps["b"].next == ["c", "d"]
    assert table.steps["d"].terminal and not table.steps["b"].terminal


def test_only_referenced_outputs_are_carried() -> None:
    table = compile_(LINEAR)
    # c reads steps.a, the workflow output reads steps.b: both travel from b onward.
    assert table.steps["a"].keep == ["a", "b"]
    assert table.steps["b"].keep == ["a", "b"]
    assert table.steps["c"].keep == ["b"]


def test_indexing_steps_dynamically_keeps_everything() -> None:
    table = compile_(
        "name: w\nsteps:\n  a: {node: noop, next: b}\n"
        "  b: {node: noop, input: 'steps[\"a\"].output'}\n"
    )
    assert table.steps["a"].keep is None


def test_table_round_trips_through_json() -> None:
    table = compile_(LINEAR)
    assert RoutingTable.from_json(table.to_json()) == table


def test_revision_changes_with_the_spec_only() -> None:
    assert compile_(LINEAR).revision == compile_(LINEAR).revision
    assert compile_(LINEAR).revision != compile_(LINEAR.replace("id]", "id, total]")).revision


def test_unknown_node_names_line_and_suggests() -> None:
    (msg,) = problems("name: w\nsteps:\n  a:\n    node: ecko\n")
    assert msg.startswith("wf.yaml:4: step 'a': unknown node 'ecko'; did you mean 'echo'?")


def test_unknown_step_reference() -> None:
    found = problems("name: w\nsteps:\n  a: {node: echo, next: [chek]}\n  check: {node: echo}\n")
    assert found[0] == "wf.yaml:3: step 'a': unknown step 'chek' (did you mean 'check'?)"
    assert found[1].startswith("wf.yaml:4: step 'check': step is unreachable")


def test_unreachable_step() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo}\n  b: {node: echo}\n")
    assert msg.startswith("wf.yaml:4: step 'b': step is unreachable")


def test_cycle_without_bound() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo, next: b}\n  b: {node: echo, next: a}\n")
    assert "cycle without a bound: a -> b -> a" in msg


def test_bad_expression_points_at_its_line() -> None:
    (msg,) = problems("name: w\nsteps:\n  a:\n    node: echo\n    input: 'prev.'\n")
    assert msg.startswith("wf.yaml:5: step 'a': cannot compile 'prev.'")


def test_expression_naming_an_undefined_step() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo, input: 'steps.nope.output'}\n")
    assert "undefined step 'nope'" in msg and msg.startswith("wf.yaml:3:")


def test_unknown_variable_in_expression() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo, input: 'payload.x'}\n")
    assert "unknown variable payload" in msg


def test_node_config_is_validated_against_its_model() -> None:
    (msg,) = problems("name: w\nsteps:\n  a:\n    node: echo\n    with:\n      times: lots\n")
    assert msg.startswith("wf.yaml:6: step 'a': config of node 'echo': steps.a.with.times")


def test_unknown_field_is_rejected_with_its_line() -> None:
    (msg,) = problems("name: w\nsteps:\n  a:\n    node: echo\n    nxt: b\n")
    assert msg.startswith("wf.yaml:5: step 'a': steps.a.nxt: unknown field")


def test_several_problems_are_reported_together() -> None:
    found = problems("name: w\nsteps:\n  a: {node: nope, next: zz}\n  b: {node: echo}\n")
    assert len(found) == 3  # unknown node, unknown step, unreachable b


def test_invalid_names_and_trigger_subjects() -> None:
    found = problems(
        "name: 'bad name'\ntrigger: {subjects: [nano.x]}\nsteps:\n  _a: {node: echo}\n"
    )
    assert any("workflow name 'bad name'" in p for p in found)
    assert any("step name '_a'" in p for p in found)
    assert any("trigger subject 'nano.x' is not allowed" in p for p in found)


def test_invalid_input_schema() -> None:
    found = problems("name: w\ninput: {type: objekt}\nsteps:\n  a: {node: echo}\n")
    assert any("input is not a valid JSON Schema" in p for p in found)


def test_malformed_yaml_names_the_line() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo\n  b: 1\n")
    assert msg.startswith("wf.yaml:") and "malformed YAML" in msg


def test_yaml_aliases_are_refused() -> None:
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    (msg,) = problems(bomb)
    assert "aliases" in msg and msg.startswith("wf.yaml:2")


def test_a_workflow_must_be_a_mapping() -> None:
    (msg,) = problems("- just\n- a list\n")
    assert "must be a mapping" in msg


def test_reading_a_step_that_runs_later_is_an_error() -> None:
    (msg,) = problems(
        "name: w\nsteps:\n  a: {node: echo, input: 'steps.b.output', next: b}\n  b: {node: echo}\n"
    )
    assert "reads steps.b, but 'b' never runs before this step" in msg


def test_a_join_on_a_step_that_never_routes_to_it() -> None:
    found = problems(
        "name: w\nsteps:\n  a: {node: echo, next: [b, c]}\n  b: {node: echo}\n"
        "  c: {node: echo, next: j}\n  j: {node: echo, join: [b, c]}\n"
    )
    assert any("join can never complete: step 'b' never routes here" in p for p in found)


def test_conditional_routes_compile_and_mixing_is_refused() -> None:
    table = compile_(
        "name: w\nsteps:\n  a:\n    node: echo\n    choose: all\n    routes:\n"
        "      x: {when: 'output.v > 1', to: b}\n      y: {when: 'true', to: [c]}\n"
        "  b: {node: echo}\n  c: {node: echo}\n"
    )
    assert table.steps["a"].routes["x"].when == "output.v > 1"
    assert table.steps["a"].choose == "all"
    (msg,) = problems(
        "name: w\nsteps:\n  a:\n    node: echo\n    routes:\n"
        "      x: {when: 'true', to: b}\n      y: [b]\n  b: {node: echo}\n"
    )
    assert "mix of routes with and without `when`" in msg


def test_a_loop_back_edge_is_not_a_cycle_but_must_lead_back() -> None:
    table = compile_(
        "name: w\nsteps:\n  a: {node: echo, next: b}\n"
        "  b: {node: echo, loop: {until: 'output.done', max: 5, back_to: a}}\n"
    )
    assert table.steps["b"].loop is not None and table.steps["b"].loop.back_to == "a"
    found = problems(
        "name: w\nsteps:\n  a: {node: echo, next: [b, c]}\n  b: {node: echo}\n"
        "  c: {node: echo, loop: {until: 'true', max: 5, back_to: b}}\n"
    )
    assert any("loop back_to 'b' does not lead to this step" in p for p in found)


def test_a_loop_needs_a_bound() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo, loop: {until: 'true'}}\n")
    assert "steps.a.loop.max: field required" in msg


def test_call_steps_have_no_node() -> None:
    (msg,) = problems("name: w\nsteps:\n  a: {node: echo, call: {workflow: other}}\n")
    assert "a `call` step has no `node`" in msg
    (msg,) = problems("name: w\nsteps:\n  a: {input: 'prev'}\n")
    assert "a step needs a `node` (or a `call`)" in msg


def test_a_call_to_a_workflow_not_compiled_together(tmp_path: Path) -> None:
    from nanoservice.workflow.project import compile_files

    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  s: {call: {workflow: missing}}\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  s: {call: {workflow: a}}\n")
    with pytest.raises(WorkflowError) as info:
        compile_files(sorted(tmp_path.glob("*.yaml")), REGISTRY)
    (problem,) = info.value.problems
    assert "calls workflow 'missing'" in str(problem) and problem.step == "s"


def test_the_trigger_payload_travels_only_while_a_later_step_reads_it() -> None:
    table = compile_(
        "name: w\nsteps:\n  a: {node: echo, next: b}\n"
        "  b: {node: echo, input: 'input', next: c}\n  c: {node: echo}\n"
    )
    assert [table.steps[s].keep_input for s in "abc"] == [True, False, False]
    looped = compile_(
        "name: w\nsteps:\n  a: {node: echo, input: 'input.x', next: b}\n"
        "  b: {node: echo, loop: {until: 'true', max: 3, back_to: a}}\n"
    )
    assert looped.steps["b"].keep_input  # the loop goes back to a, which reads input
