"""nano.yaml: the model, its problems with file and line, and the groups of each mode."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nanoservice.deploy import (
    DeployError,
    ProcessGroup,
    find_config,
    load_config,
    parse_bytes,
    parse_config,
    resolve,
)
from nanoservice.deploy.schema import deploy_schema, render_deployment_doc
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text
from nanoservice.workflow.table import RoutingTable

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "deployment.md"
REGISTRY = Registry.discover([ROOT / "tests" / "patterns" / "nodes"])
HELLO = compile_file(ROOT / "workflows" / "hello.yaml", REGISTRY)
TWO = compile_text(
    "name: two\nsteps:\n  a:\n    node: transform\n    with: {expr: 'input'}\n    next: b\n"
    "  b:\n    node: log\n",
    REGISTRY,
)
NANO_YAML = re.compile(r"```yaml\n(# nano\.yaml\n.*?)```", re.S)


def groups(text: str, tables: list[RoutingTable], mode: str | None = None) -> list[ProcessGroup]:
    return resolve(parse_config(text), tables, mode)  # type: ignore[arg-type]


def problems(text: str, tables: list[RoutingTable] = [HELLO], mode: str | None = None) -> list[str]:  # noqa: B006
    with pytest.raises(DeployError) as info:
        groups(text, tables, mode)
    return [str(p) for p in info.value.problems]


def test_without_a_file_it_is_one_monolith_running_everything(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    (group,) = resolve(load_config(None), [HELLO, TWO])
    assert group.name == "monolith" and group.every_step
    assert group.steps == ("hello.greet", "hello.normalize", "hello.record", "two.a", "two.b")
    assert group.host_args() == ["host"]
    assert group.replicas.initial == 1 and group.replicas.fixed


def test_file_is_found_and_read(tmp_path: Path) -> None:
    (tmp_path / "nano.yaml").write_text("mode: nano\n")
    path = find_config(tmp_path)
    assert path == tmp_path / "nano.yaml"
    assert load_config(path).config.mode == "nano"


def test_micro_groups_by_step_workflow_node_and_the_rest() -> None:
    text = (
        "mode: micro\ngroups:\n"
        "  front: {steps: [hello.normalize]}\n"
        "  logs: {nodes: [log], replicas: 2, resources: {memory: 64Mi}}\n"
        "  rest: {steps: ['*']}\n"
        "defaults: {resources: {memory: 1Gi, open_files: 256}}\n"
    )
    front, logs, rest = groups(text, [HELLO, TWO])
    assert (front.name, front.steps) == ("front", ("hello.normalize",))
    assert logs.steps == ("hello.record", "two.b") and logs.replicas.initial == 2
    assert logs.resources.memory == 64 * 1024**2 and logs.resources.open_files == 256
    assert rest.steps == ("hello.greet", "two.a") and rest.resources.memory == 1024**3
    assert front.host_args() == ["host", "--steps", "hello.normalize"]


def test_nano_is_one_group_per_step_keeping_its_file_groups_settings() -> None:
    text = "groups:\n  logs:\n    nodes: [log]\n    replicas: {min: 1, max: 3}\n"
    found = {g.name: g for g in groups(text, [HELLO], "nano")}
    assert sorted(found) == ["hello.greet", "hello.normalize", "hello.record"]
    assert all(g.steps == (name,) for name, g in found.items())
    assert (found["hello.record"].replicas.min, found["hello.record"].replicas.max) == (1, 3)
    assert found["hello.greet"].replicas.fixed  # no group: defaults
    # the file's mode is monolith; the same file as micro needs every step placed
    assert len(groups(text, [HELLO])) == 1
    assert "hello.greet" in problems(text, mode="micro")[0]


def test_nano_per_node_groups_steps_by_node() -> None:
    found = {g.name: g.steps for g in groups("mode: nano\nper: node\n", [HELLO, TWO])}
    assert found == {
        "transform": ("hello.greet", "hello.normalize", "two.a"),
        "log": ("hello.record", "two.b"),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mode: mikro\n", "nano.yaml:1: mode: Input should be 'monolith', 'micro' or 'nano'"),
        (
            "mode: micro\ngroups:\n  a:\n    stepz: [x]\n",
            "nano.yaml:4: groups.a.stepz: unknown field",
        ),
        ("groups:\n  a: {}\n", "nano.yaml:2: groups.a: a group needs `steps` or `nodes`"),
        (
            "defaults:\n  resources:\n    memory: lots\n",
            "nano.yaml:3: defaults.resources.memory: 'lots' is not a size",
        ),
        (
            "groups:\n  a:\n    steps: ['*']\n    replicas: {min: 3, max: 2}\n",
            "nano.yaml:4: groups.a.replicas: min (3) is more than max (2)",
        ),
        ("groups:\n  a:\n    steps: ['*']\n    replicas: 0\n", "nano.yaml:4: groups.a.replicas:"),
        ("durability:\n  sync_interval: soon\n", "nano.yaml:2: durability.sync_interval:"),
        ("- mode\n", "nano.yaml:1: nano.yaml must be a mapping"),
        ("mode: micro\nmode: nano\n", "nano.yaml:2: duplicate key 'mode'"),
    ],
)
def test_invalid_files_say_what_and_where(text: str, expected: str) -> None:
    with pytest.raises(DeployError) as info:
        parse_config(text)
    assert str(info.value.problems[0]).startswith(expected), info.value.problems


def test_grouping_problems_have_lines() -> None:
    found = problems(
        "mode: micro\ngroups:\n  a:\n    steps: [hello.nope, hello]\n"
        "  b:\n    steps: [hello.greet, '*']\n    nodes: [nonode]\n  c:\n    steps: ['*']\n"
    )
    assert found == [
        "nano.yaml:4: group 'a': no step or workflow 'hello.nope' (workflows: hello)",
        "nano.yaml:7: group 'b': no step uses node 'nonode' (nodes in use: log, transform)",
        "nano.yaml:5: step hello.greet is in group 'a' and in group 'b'",
        "nano.yaml:9: group 'c': `*` is also in group 'b'",
    ]
    assert problems("mode: micro\n") == [
        "nano.yaml:1: mode micro needs `groups` (e.g. groups: {all: {steps: ['*']}})"
    ]
    assert problems("mode: micro\ngroups:\n  a: {steps: [hello.greet]}\n") == [
        "nano.yaml:2: no group runs hello.normalize, hello.record (name them in a group, or "
        "add `steps: ['*']` to one)"
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * 1024**2), ("2G", 2 * 10**9), ("1.5Ki", 1536), ("100", 100), (7, 7)],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


def test_doc_examples_are_valid_and_their_errors_are_what_the_page_shows() -> None:
    page = PAGE.read_text()
    examples = NANO_YAML.findall(page)
    assert examples
    for text in examples:
        for mode in ("monolith", "micro", "nano"):
            assert groups(text, [HELLO], mode)
    shown = re.findall(r"^error: (nano\.yaml:\d+: .*)$", page, re.M)
    assert shown
    broken = examples[0].replace("hello.greet]", "hello.gret]")
    assert problems(broken) == shown


def test_generated_reference_and_schema_are_current() -> None:
    page = PAGE.read_text()
    assert render_deployment_doc(page) == page, "run: python -m nanoservice.deploy.schema"
    schema = json.loads((ROOT / "docs" / "nano.schema.json").read_text())
    assert schema == deploy_schema(), "run: python -m nanoservice.deploy.schema"
