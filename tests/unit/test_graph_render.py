"""`nano graph` images: every step's label is in the SVG and drawn in the PNG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_text
from nanoservice.workflow.graph_svg import FONT, Drawing, to_png, to_svg
from nanoservice.workflow.table import RoutingTable

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = sorted((ROOT / "tests" / "patterns").glob("*.yaml"))
REGISTRY = Registry.discover([ROOT / "tests" / "patterns" / "nodes"])
SVG = "{http://www.w3.org/2000/svg}"


def table_of(path: Path) -> RoutingTable:
    spec = yaml.safe_load(path.read_text())["workflow"]
    return compile_text(yaml.safe_dump(spec, sort_keys=False), REGISTRY, file=path.name)


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


@pytest.mark.parametrize("path", PATTERNS, ids=lambda p: p.stem)
def test_svg_names_every_step_with_its_node(path: Path) -> None:
    table = table_of(path)
    shown = texts(to_svg(Drawing(table)))
    for name, step in table.steps.items():
        assert name in shown, f"{path.name}: step {name} has no label"
        what = step.node or f"call {step.call.workflow if step.call else ''}"
        assert any(what in text for text in shown), f"{path.name}: {what} not shown"
    assert "trigger" in shown and "done" in shown


def test_steps_are_coloured_by_kind() -> None:
    kinds = {
        p.stem: {
            g.get("data-step"): g.get("data-kind")
            for g in ET.fromstring(to_svg(Drawing(table_of(p)))).iter(f"{SVG}g")
        }
        for p in PATTERNS
    }
    assert kinds["parallel_join"]["merge"] == "join"
    assert kinds["exclusive_choice"] != {}
    assert "choice" in kinds["exclusive_choice"].values()
    assert kinds["subworkflow"]["enrich"] == "call"
    assert "for_each" in kinds["for_each"].values()


def test_png_is_not_blank_and_draws_the_labels() -> None:
    svg = to_svg(Drawing(table_of(ROOT / "tests" / "patterns" / "parallel_join.yaml")))
    png = to_png(svg)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    without_text = re.sub(r"<text[^>]*>[^<]*</text>", "", svg)
    without_boxes = re.sub(r"<(rect|polyline)[^>]*/>", "", without_text)
    # Labels vanish silently when resvg has no font: then these two would be the same image.
    assert to_png(without_text) != png
    assert to_png(without_boxes) != to_png(without_text)  # and the boxes are drawn too
    assert FONT.is_file() and FONT.stat().st_size > 100_000


def test_an_execution_path_is_highlighted_and_the_rest_faded() -> None:
    table = table_of(ROOT / "tests" / "patterns" / "exclusive_choice.yaml")
    taken = set(list(table.steps)[:1])
    svg = to_svg(Drawing(table, taken, {("_trigger", next(iter(taken)))}))
    faded = {g.get("data-step"): g.get("opacity") for g in ET.fromstring(svg).iter(f"{SVG}g")}
    for name in table.steps:
        assert faded[name] == ("1" if name in taken else "0.45"), name
    assert 'stroke="#dc2626" stroke-width="2.5"' in svg
