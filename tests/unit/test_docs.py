"""Every sample workflow and every example in the docs compiles; generated docs are current."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml

from nanoservice.errors import WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text
from nanoservice.workflow.docgen import (
    nodes_markdown,
    patterns_markdown,
    render_workflows_doc,
    workflow_schema,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(yaml|python)\n(.*?)```", re.S)


def blocks(kind: str) -> list[tuple[str, str]]:
    found = []
    for page in DOCS:
        for i, match in enumerate(FENCE.finditer(page.read_text())):
            if match.group(1) == kind:
                found.append((f"{page.name}#{i}", match.group(2)))
    return found


REGISTRY = Registry.discover([ROOT / "tests" / "patterns" / "nodes"])


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.yaml")), ids=lambda p: p.name)
def test_sample_workflows_compile(path: Path) -> None:
    table = compile_file(path, REGISTRY)
    assert table.workflow == path.stem


WORKFLOW_BLOCKS = [
    (n, b) for n, b in blocks("yaml") if "steps:" in b and "name:" in b and "# invalid" not in b
]
INVALID_BLOCKS = [(n, b) for n, b in blocks("yaml") if b.startswith("# invalid")]


@pytest.mark.parametrize(("where", "text"), INVALID_BLOCKS, ids=[n for n, _ in INVALID_BLOCKS])
def test_doc_invalid_examples_fail_as_the_docs_say(where: str, text: str) -> None:
    with pytest.raises(WorkflowError) as info:
        compile_text(text, Registry.discover(), file="broken.yaml")
    page = next(p for p in DOCS if p.name == where.split("#")[0]).read_text()
    for problem in info.value.problems:
        assert f"error: {problem}" in page, f"{where}: docs do not show {problem}"


def page_registry(where: str) -> Registry:
    """The test registry plus the nodes the page's own python examples define."""
    registry = REGISTRY.copy()
    page = where.split("#")[0]
    for name, code in blocks("python"):
        if name.split("#")[0] == page:
            namespace: dict[str, object] = {}
            exec(compile(code, name, "exec"), namespace)
            for value in namespace.values():
                try:
                    registry.add(value, replace=True)
                except TypeError:
                    continue
    return registry


@pytest.mark.parametrize(("where", "text"), WORKFLOW_BLOCKS, ids=[n for n, _ in WORKFLOW_BLOCKS])
def test_doc_workflow_examples_compile(where: str, text: str) -> None:
    compile_text(text, page_registry(where), file=where)


def test_docs_have_workflow_examples() -> None:
    assert len(WORKFLOW_BLOCKS) >= 5


def test_readme_shows_the_hello_sample_verbatim() -> None:
    sample = (ROOT / "workflows" / "hello.yaml").read_text()
    body = "\n".join(line for line in sample.splitlines() if not line.startswith("#")) + "\n"
    assert body in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("where", "code"), blocks("python"), ids=[n for n, _ in blocks("python")])
def test_doc_python_examples_define_nodes(where: str, code: str) -> None:
    namespace: dict[str, object] = {}
    exec(compile(code, where, "exec"), namespace)
    registry = Registry()
    for value in namespace.values():
        try:
            registry.add(value)
        except TypeError:
            continue
    assert registry.names(), f"{where} defines no node"


TEST_FUNCTION = re.compile(r"^(?:async )?def test_\w+\(", re.M)
TESTED_BLOCKS = [(n, b) for n, b in blocks("python") if TEST_FUNCTION.search(b)]


def test_docs_show_a_tested_python_example() -> None:
    assert TESTED_BLOCKS, "no python example in the docs carries a test function"


@pytest.mark.parametrize(("where", "code"), TESTED_BLOCKS, ids=[n for n, _ in TESTED_BLOCKS])
async def test_doc_python_examples_run_their_tests(where: str, code: str) -> None:
    """Only blocks that define a test: each of its test functions runs and must pass."""
    namespace: dict[str, object] = {}
    exec(compile(code, where, "exec"), namespace)
    ran = []
    for name, value in namespace.items():
        if name.startswith("test_") and callable(value):
            result = value()
            if asyncio.iscoroutine(result):
                await result
            ran.append(name)
    assert ran, f"{where}: its test functions did not run"


def test_generated_reference_is_current() -> None:
    page = (ROOT / "docs" / "workflows.md").read_text()
    assert render_workflows_doc(page) == page, "run: python -m nanoservice.workflow.docgen"
    schema = json.loads((ROOT / "docs" / "workflow.schema.json").read_text())
    assert schema == workflow_schema(), "run: python -m nanoservice.workflow.docgen"


def test_generated_nodes_page_is_current() -> None:
    page = (ROOT / "docs" / "nodes.md").read_text()
    assert nodes_markdown() == page, "run: python -m nanoservice.workflow.docgen"


def test_generated_patterns_page_is_current() -> None:
    page = (ROOT / "docs" / "patterns.md").read_text()
    assert patterns_markdown(ROOT / "tests" / "patterns") == page, (
        "run: python -m nanoservice.workflow.docgen"
    )


def test_hello_matches_the_published_schema() -> None:
    import jsonschema

    data = yaml.safe_load((ROOT / "workflows" / "hello.yaml").read_text())
    jsonschema.validate(data, workflow_schema())
