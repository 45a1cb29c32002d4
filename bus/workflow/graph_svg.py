"""Drawing a routing table as an image: a layered layout (grandalf) written out as SVG, and
SVG to PNG with resvg and the bundled DejaVu Sans font (without a font, resvg drops labels).

Steps are coloured by kind (plain, choice, join, call, for-each); an execution's path
(``highlight``: the steps it ran and the edges it took) is drawn bold, the rest faded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from nanoservice.workflow.table import RoutingTable, StepRoute

__all__ = ["FONT", "Drawing", "Edge", "edges_of", "kind_of", "to_png", "to_svg"]

FONT = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
_FAMILY = "DejaVu Sans"
_CHAR_W, _LINE_H, _PAD = 7.2, 16, 12
_COLOURS = {
    "plain": "#dbeafe",
    "choice": "#fef3c7",
    "join": "#dcfce7",
    "call": "#ede9fe",
    "for_each": "#fce7f3",
    "end": "#e5e7eb",
}
_HOT, _COLD = "#dc2626", "#9ca3af"
_START, _END = "_trigger", "_done"
"""Ids of the trigger and done nodes (``_`` names are reserved: no step has them)."""
_ENDS = (_START, _END)
_JOIN_DASH = ' stroke-dasharray="6 3"'


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dashed: bool = False


@dataclass
class Drawing:
    """What to draw: the table, and optionally the steps and edges an execution took."""

    table: RoutingTable
    steps: set[str] | None = None
    edges: set[tuple[str, str]] = field(default_factory=set)


def kind_of(step: StepRoute) -> str:
    if step.join is not None:
        return "join"
    if step.call is not None:
        return "for_each" if step.for_each is not None else "call"
    if step.for_each is not None:
        return "for_each"
    if step.routes or step.default:
        return "choice"
    return "plain"


def edges_of(table: RoutingTable) -> list[Edge]:
    """Every edge of the flowchart (as ``to_mermaid`` draws them)."""
    found = [Edge(_START, name) for name in table.start]
    for name, step in table.steps.items():
        found += [Edge(name, t) for t in step.next]
        for route, spec in step.routes.items():
            found += [Edge(name, t, route) for t in spec.to]
        found += [Edge(name, t, "default") for t in step.default]
        found += [Edge(name, t, "error", True) for t in step.on_error]
        if step.join is not None:
            found += [Edge(name, t, "timeout", True) for t in step.join.on_timeout]
        if step.loop is not None:
            found.append(Edge(name, step.loop.back_to, f"until, max {step.loop.max}", True))
        if step.terminal:
            found.append(Edge(name, _END))
    return list(dict.fromkeys(found))


def _labels(table: RoutingTable) -> dict[str, tuple[str, str]]:
    """Node id -> (title, subtitle)."""
    labels = {_START: ("trigger", ""), _END: ("done", "")}
    for name, step in table.steps.items():
        what = step.node or (f"call {step.call.workflow}" if step.call else "?")
        if step.for_each is not None:
            what = f"for each: {what}"
        labels[name] = (name, what)
    return labels


class _Box:
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _Path:
    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, points: list[tuple[float, float]]) -> None:
        self.points = [(float(x), float(y)) for x, y in points]


def _layout(
    names: list[str], sizes: Mapping[str, tuple[float, float]], edges: list[Edge]
) -> tuple[dict[str, tuple[float, float]], dict[Edge, list[tuple[float, float]]]]:
    """Centres of nodes and edge polylines, left to right (grandalf lays out top-down,
    so widths and heights are swapped going in and coordinates coming out)."""
    from grandalf.graphs import Edge as GEdge  # type: ignore[import-untyped]
    from grandalf.graphs import Graph, Vertex
    from grandalf.layouts import SugiyamaLayout  # type: ignore[import-untyped]

    vertices = {n: Vertex(n) for n in names}
    for n, v in vertices.items():
        v.view = _Box(sizes[n][1], sizes[n][0])
    gedges = []
    for edge in edges:
        g = GEdge(vertices[edge.source], vertices[edge.target])
        g.view = _Path()
        g.data = edge
        gedges.append(g)
    graph = Graph(list(vertices.values()), gedges)
    offset = 0.0
    centres: dict[str, tuple[float, float]] = {}
    paths: dict[Edge, list[tuple[float, float]]] = {}
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.xspace, layout.yspace = 30, 60
        layout.init_all()
        layout.draw()
        xs = [v.view.xy[0] - v.view.w / 2 for v in component.sV]
        shift = offset - min(xs)
        for v in component.sV:
            x, y = v.view.xy
            centres[v.data] = (y, x + shift)
        for g in component.sE:
            paths[g.data] = [(y, x + shift) for x, y in g.view.points]
        offset = max(v.view.xy[0] + v.view.w / 2 for v in component.sV) + shift + 40
    return centres, paths


def _clip(
    centre: tuple[float, float], size: tuple[float, float], towards: tuple[float, float]
) -> tuple[float, float]:
    """Where the segment from a box's centre towards a point leaves the box."""
    (cx, cy), (w, h) = centre, size
    dx, dy = towards[0] - cx, towards[1] - cy
    if dx == 0 and dy == 0:
        return centre
    scale = min(
        (w / 2) / abs(dx) if dx else float("inf"), (h / 2) / abs(dy) if dy else float("inf")
    )
    return (cx + dx * min(scale, 1.0), cy + dy * min(scale, 1.0))


def to_svg(drawing: Drawing) -> str:
    """The flowchart as a standalone SVG document."""
    table = drawing.table
    labels = _labels(table)
    edges = edges_of(table)
    names = [_START, *table.steps, _END]
    names = [n for n in names if any(n in (e.source, e.target) for e in edges) or n in table.steps]
    sizes = {
        n: (max(len(t), len(s), 4) * _CHAR_W + 2 * _PAD, (2 if s else 1) * _LINE_H + 2 * _PAD)
        for n, (t, s) in labels.items()
        if n in names
    }
    centres, paths = _layout(names, sizes, edges)
    hot = drawing.steps
    parts: list[str] = []
    extent: list[tuple[float, float]] = []
    for edge in edges:
        taken = hot is None or (edge.source, edge.target) in drawing.edges
        points = paths.get(edge) or [centres[edge.source], centres[edge.target]]
        if points[0] != centres[edge.source] and _near(points[-1], centres[edge.source]):
            points = points[::-1]
        points = [centres[edge.source], *points[1:-1], centres[edge.target]]
        (sx, sy), (tx, ty) = centres[edge.source], centres[edge.target]
        if tx <= sx:  # a loop back: an arc over the boxes, not a line through them
            top = min(sy - sizes[edge.source][1] / 2, ty - sizes[edge.target][1] / 2) - 28
            if edge.source == edge.target:
                sx, tx = sx + sizes[edge.source][0] / 4, tx - sizes[edge.target][0] / 4
            points = [
                (sx, sy - sizes[edge.source][1] / 2), (sx, top), (tx, top),
                (tx, ty - sizes[edge.target][1] / 2),
            ]  # fmt: skip
        else:
            points[0] = _clip(centres[edge.source], sizes[edge.source], points[1])
            points[-1] = _clip(centres[edge.target], sizes[edge.target], points[-2])
        extent += points
        colour = "#374151" if hot is None else (_HOT if taken else _COLD)
        width = 2.5 if hot is not None and taken else 1.3
        dash = ' stroke-dasharray="5 4"' if edge.dashed else ""
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        marker = "hot" if hot is not None and taken else ("cold" if hot is not None else "arrow")
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="{width}"'
            f'{dash} marker-end="url(#{marker})"/>'
        )
        if edge.label:
            mid = points[len(points) // 2 - 1 : len(points) // 2 + 1]
            mx, my = (sum(p[0] for p in mid) / len(mid), sum(p[1] for p in mid) / len(mid))
            parts.append(
                f'<text x="{mx:.1f}" y="{my - 4:.1f}" font-size="11" text-anchor="middle" '
                f'fill="#4b5563">{escape(edge.label)}</text>'
            )
    for name in names:
        (cx, cy), (w, h) = centres[name], sizes[name]
        title, subtitle = labels[name]
        kind = "end" if name in _ENDS else kind_of(table.steps[name])
        ran = hot is None or name in hot or name in _ENDS
        stroke = _HOT if hot is not None and ran and name not in _ENDS else "#4b5563"
        opacity = "1" if ran else "0.45"
        radius = h / 2 if kind == "end" else (2 if kind == "join" else 8)
        parts.append(
            f'<g opacity="{opacity}" data-step="{escape(name)}" data-kind="{kind}">'
            f'<rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'rx="{radius:.1f}" fill="{_COLOURS[kind]}" stroke="{stroke}" '
            f'stroke-width="{2.5 if stroke == _HOT else 1.2}"'
            f"{_JOIN_DASH if kind == 'join' else ''}/>"
        )
        top = cy - (_LINE_H / 2 if subtitle else 0) + 4
        parts.append(
            f'<text x="{cx:.1f}" y="{top:.1f}" font-size="13" font-weight="bold" '
            f'text-anchor="middle" fill="#111827">{escape(title)}</text>'
        )
        if subtitle:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + _LINE_H:.1f}" font-size="11" '
                f'text-anchor="middle" fill="#374151">{escape(subtitle)}</text>'
            )
        parts.append("</g>")
    xs = [c[0] - sizes[n][0] / 2 for n, c in centres.items()] + [
        c[0] + sizes[n][0] / 2 for n, c in centres.items()
    ]
    ys = [c[1] - sizes[n][1] / 2 for n, c in centres.items()] + [
        c[1] + sizes[n][1] / 2 for n, c in centres.items()
    ]
    xs += [p[0] for p in extent]
    ys += [p[1] - 14 for p in extent]
    x0, y0 = min(xs) - 20, min(ys) - 20
    width, height = max(xs) - x0 + 20, max(ys) - y0 + 20
    markers = "".join(
        f'<marker id="{mid}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
        f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" '
        f'fill="{colour}"/></marker>'
        for mid, colour in (("arrow", "#374151"), ("hot", _HOT), ("cold", _COLD))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{x0:.1f} {y0:.1f} {width:.1f} '
        f'{height:.1f}" width="{width:.0f}" height="{height:.0f}" '
        f'font-family="{_FAMILY}, sans-serif">'
        f"<title>{escape(table.workflow)}</title><defs>{markers}</defs>"
        f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'fill="white"/>' + "".join(parts) + "</svg>\n"
    )


def _near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) < 1 and abs(a[1] - b[1]) < 1


def to_png(svg: str, *, zoom: float = 2.0) -> bytes:
    """Render an SVG made by :func:`to_svg` to PNG, with the bundled font only."""
    import resvg_py

    return bytes(
        resvg_py.svg_to_bytes(
            svg_string=svg,
            font_files=[str(FONT)],  # resvg-py ignores font_files with skip_system_fonts
            font_family=_FAMILY,
            zoom=zoom,
        )
    )
