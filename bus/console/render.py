"""Rendering: the Jinja2 environment (autoescaped), value formatting and the graph.

Every value from a payload, a header or a node error reaches a page through a template
with autoescaping on, so markup in it is shown as text. Payloads are shown truncated
(``MAX_PAYLOAD`` characters of their JSON), with a note saying how much was left out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from nanoservice.workflow.graph import to_mermaid
from nanoservice.workflow.graph_svg import Drawing, to_svg
from nanoservice.workflow.table import RoutingTable

__all__ = ["MAX_PAYLOAD", "environment", "graph_markup", "graph_svg", "payload_text"]

MAX_PAYLOAD = 4000
"""Characters of a payload's JSON a page shows."""

_HERE = Path(__file__).resolve().parent


def payload_text(value: Any, limit: int = MAX_PAYLOAD) -> str:
    """``value`` as indented JSON, cut at ``limit`` characters with a note."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        left = len(text) - limit
        text = f"{text[:limit]}\n… ({left} more characters not shown)"
    return text


def graph_markup(table: RoutingTable) -> Markup:
    """The workflow's graph for its page: the SVG ``nano graph -o x.svg`` draws (served
    beside the page, so the page's CSP holds), and its Mermaid source to copy."""
    return Markup(
        '<img class="graph" src="{0}/graph.svg" alt="graph of workflow {0}">'
        '<details><summary>Mermaid</summary><pre class="graph">{1}</pre></details>'
    ).format(table.workflow, to_mermaid(table))


def graph_svg(table: RoutingTable) -> str:
    """The workflow's flowchart as an SVG document."""
    return to_svg(Drawing(table))


def clock(stamp: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if stamp is None:
        return "-"
    millis = int((stamp % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f".{millis:03d}"


def seconds(value: float | None) -> str:
    """A duration, in ms below a second."""
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def environment() -> Environment:
    """Templates from ``templates/``; every ``{{ value }}`` is HTML-escaped."""
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(clock=clock, seconds=seconds, payload=payload_text, escape=escape)
    return env
