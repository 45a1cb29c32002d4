"""docs/routing-table.schema.json is current, and every compiled table matches it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text
from nanoservice.workflow.table import RoutingTable
from nanoservice.workflow.tableschema import SCHEMA_FILE, render, routing_table_schema

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = Registry.discover([ROOT / "tests" / "patterns" / "nodes"])
WORKFLOWS = sorted([*ROOT.glob("workflows/*.yaml"), *ROOT.glob("tests/patterns/*.yaml")])


def compiled(path: Path) -> RoutingTable:
    """A workflow file, or the workflows of a pattern file (every control-flow shape)."""
    if path.parent.name != "patterns":
        return compile_file(path, REGISTRY)
    spec = yaml.safe_load(path.read_text())
    return compile_text(yaml.safe_dump(spec["workflow"], sort_keys=False), REGISTRY)


def test_the_checked_in_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == render(), "run: python -m nanoservice.workflow.tableschema"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_compiled_table_matches_the_schema(path: Path) -> None:
    table = json.loads(compiled(path).to_json())
    jsonschema.validate(table, routing_table_schema())


def test_the_schema_rejects_a_table_missing_its_steps() -> None:
    table = json.loads(compiled(WORKFLOWS[0]).to_json())
    del table["steps"]
    with pytest.raises(jsonschema.ValidationError, match="'steps' is a required property"):
        jsonschema.validate(table, routing_table_schema())


def test_protocol_md_names_every_table_field() -> None:
    page = (ROOT / "docs" / "protocol.md").read_text()
    section = page[page.index("## The routing table") : page.index("## Foreign hosts")]
    defs = routing_table_schema()["$defs"]
    for model in ("RoutingTable", "StepRoute"):
        missing = [f for f in defs[model]["properties"] if f"`{f}`" not in section]
        assert not missing, f"{model} fields not in docs/protocol.md: {missing}"
