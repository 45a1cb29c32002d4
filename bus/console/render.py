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
from nanoservice.workflow.table import RoutingTable

__all__ = ["MAX_PAYLOAD", "environment", "graph_markup", "payload_text"]

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
    """The workflow's graph for its page.

    Until the SVG of ``nano graph`` lands this is the Mermaid source (what ``nano graph``
    prints), escaped into a ``<pre>``; switching to the SVG changes only this function.
    """
    source = to_mermaid(table)
    return Markup('<pre class="graph" aria-label="workflow graph (Mermaid)">{}</pre>').format(
        source
    )


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
