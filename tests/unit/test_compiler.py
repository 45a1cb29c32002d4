"""The compiler: from YAML to routing table, and every problem with file, line and step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from nanoservice.errors import Problem, WorkflowError
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text
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


# --- files that once crashed the loader, and problems that once had no line ---------------


def file_problems(tmp_path: Path, data: bytes | str, name: str = "wf.yaml") -> list[Problem]:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    with pytest.raises(WorkflowError) as info:
        compile_file(path, REGISTRY)
    assert all(p.line is not None and p.file == str(path) for p in info.value.problems)
    return info.value.problems


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    (problem,) = file_problems(tmp_path, b"name: w\nsteps:\n  a: {node: \xff\xfeecho}\n")
    assert problem.line == 3 and "not UTF-8" in problem.message


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    deep = "name: w\nsteps:\n  a:\n    node: echo\n    with:\n      x: " + "[" * 500 + "]" * 500
    (problem,) = file_problems(tmp_path, deep + "\n")
    assert problem.line == 6 and "nested deeper than" in problem.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!custom 1", "tag '!custom' is not allowed"),
        ("!!int 'abc'", "cannot read 'abc' as tag:yaml.org,2002:int"),
        ("!!timestamp 'abc'", "cannot read 'abc' as tag:yaml.org,2002:timestamp"),
        ("!!python/object:os.system {}", "tag 'tag:yaml.org,2002:python/object:os.system'"),
        ("!foo [1]", "tag '!foo' is not allowed"),
    ],
)
def test_tags_are_problems_with_a_line(tmp_path: Path, value: str, expected: str) -> None:
    (problem,) = file_problems(
        tmp_path, f"name: w\nsteps:\n  a:\n    node: echo\n    with: {{x: {value}}}\n"
    )
    assert problem.line == 5 and expected in problem.message


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "---\n"])
def test_an_empty_file_has_a_line(tmp_path: Path, text: str) -> None:
    (problem,) = file_problems(tmp_path, text)
    assert problem.line == 1 and "empty" in problem.message


def test_an_unacceptable_character_names_a_line_not_a_position(tmp_path: Path) -> None:
    (problem,) = file_problems(tmp_path, "name: w\nsteps:\n  a: {node: echo\x07}\n")
    assert problem.line == 3 and "position" not in problem.message
    assert "#x0007" in problem.message and "\n" not in str(problem)


def test_a_long_chain_of_steps_compiles() -> None:
    steps = "".join(f"  s{i}: {{node: echo, next: s{i + 1}}}\n" for i in range(2000))
    table = compile_(f"name: w\nsteps:\n{steps}  s2000: {{node: echo}}\n")
    assert len(table.steps) == 2001


def test_a_problem_prints_on_one_line_with_control_characters_escaped() -> None:
    (msg,) = problems('name: w\nsteps:\n  a: {node: echo, next: ["x\\ny\\u001b[2J"]}\n')
    assert "\n" not in msg and "\x1b" not in msg and "x\\ny\\x1b[2J" in msg


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cross_file_problems_have_file_and_line(tmp_path: Path) -> None:
    from nanoservice.workflow.project import compile_files

    a = write(tmp_path, "a.yaml", "# a\nname: a\nsteps:\n  s:\n    call: {workflow: missing}\n")
    b = write(tmp_path, "b.yaml", "name: a\nsteps:\n  s: {node: echo}\n")
    with pytest.raises(WorkflowError) as info:
        compile_files([a, b], REGISTRY)
    twice, call = sorted(info.value.problems, key=lambda p: p.file, reverse=True)
    assert (twice.file, twice.line) == (str(b), 1)
    assert f"also used by {a}:2" in twice.message
    assert (call.file, call.line, call.step) == (str(a), 5, "s")


@pytest.mark.parametrize(("first", "second"), [("a-b", "a_b"), ("Orders", "orders")])
def test_workflows_sharing_a_stream_are_refused(tmp_path: Path, first: str, second: str) -> None:
    from nanoservice.workflow.project import compile_files

    a = write(tmp_path, "a.yaml", f"name: {first}\nsteps:\n  s: {{node: echo}}\n")
    b = write(tmp_path, "b.yaml", f"\nname: {second}\nsteps:\n  s: {{node: echo}}\n")
    with pytest.raises(WorkflowError) as info:
        compile_files([a, b], REGISTRY)
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (str(b), 2)
    assert f"'{first}' ({a}:1)" in problem.message and "NANO_" in problem.message


def test_a_broken_file_does_not_hide_the_problems_of_the_others(tmp_path: Path) -> None:
    from nanoservice.workflow.project import compile_files

    files = [
        write(tmp_path, "a.yaml", "name: a\nsteps:\n  s: {node: echo, with: {x: !!int 'z'}}\n"),
        write(tmp_path, "b.yaml", "name: b\nsteps:\n  s: {node: ecko}\n"),
        write(tmp_path, "c.yaml", "name: c\nsteps:\n  s:\n    node: echo\n    w: " + "{x: " * 400),
    ]
    with pytest.raises(WorkflowError) as info:
        compile_files(files, REGISTRY)
    assert [(p.file, p.line) for p in info.value.problems] == [
        (str(files[0]), 3),
        (str(files[1]), 3),
        (str(files[2]), 5),
    ]


def test_a_node_config_validator_that_raises_is_a_problem() -> None:
    from pydantic import field_validator

    class Picky(BaseModel):
        x: int = 0

        @field_validator("x")
        @classmethod
        def _check(cls, value: int) -> int:
            raise KeyError(value)  # not a ValueError: pydantic lets it through

    @node("picky", config=Picky)
    async def picky(ctx: Context, input: Any) -> Any:
        return input

    with pytest.raises(WorkflowError) as info:
        compile_text(
            "name: w\nsteps:\n  a:\n    node: picky\n    with: {x: 1}\n", Registry([picky])
        )
    (problem,) = info.value.problems
    assert problem.line == 5 and "config of node 'picky': KeyError: 1" in problem.message


def test_a_compiler_bug_on_one_file_does_not_hide_the_others(tmp_path: Path) -> None:
    from nanoservice.workflow.project import compile_files

    class Broken(Registry):
        def get(self, name: str) -> Any:
            if name == "noop":
                raise RuntimeError("boom")
            return super().get(name)

    a = write(tmp_path, "a.yaml", "name: a\nsteps:\n  s: {node: noop}\n")
    b = write(tmp_path, "b.yaml", "name: b\nsteps:\n  s: {node: ecko}\n")
    with pytest.raises(WorkflowError) as info:
        compile_files([a, b], Broken([echo, noop]))
    bug, other = info.value.problems
    assert (bug.file, bug.line) == (str(a), 1) and "RuntimeError: boom" in bug.message
    assert other.file == str(b) and "unknown node 'ecko'" in other.message


@pytest.mark.parametrize("where", ["with: {times: 1, x: VALUE}", "next: [VALUE]", "input: VALUE"])
def test_a_lone_surrogate_escape_is_a_problem_not_an_unencodable_table(where: str) -> None:
    # "\ud800" is valid YAML but not UTF-8: the table could not be written as JSON.
    escaped = where.replace("VALUE", '"\\ud800"')
    text = f"name: w\nsteps:\n  a:\n    node: echo\n    {escaped}\n"
    with pytest.raises(WorkflowError) as info:
        compile_(text).to_json()
    (problem,) = info.value.problems
    assert problem.line == 5 and "\\ud800" in str(problem) and "UTF-8" in problem.message
