"""Drawing a routing table as a Mermaid flowchart (``nano graph``, docs/patterns.md)."""

from __future__ import annotations

from nanoservice.workflow.table import RoutingTable

__all__ = ["to_mermaid"]


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(table: RoutingTable) -> str:
    """A ``flowchart LR`` of the steps, their routes, joins, loops and calls."""
    lines = ["flowchart LR", "  trigger((trigger))"]
    for name, step in table.steps.items():
        what = step.node or (f"call {step.call.workflow}" if step.call else "?")
        if step.for_each is not None:
            what = f"for each: {what}"
        shape = ('{{"%s"}}' if step.join else '["%s"]') % _label(f"{name}<br/>{what}")
        lines.append(f"  {name}{shape}")
    for name in table.start:
        lines.append(f"  trigger --> {name}")
    for name, step in table.steps.items():
        for target in step.next:
            lines.append(f"  {name} --> {target}")
        for route, spec in step.routes.items():
            label = _label(f"{route}: {spec.when}" if spec.when else route)
            for target in spec.to:
                lines.append(f'  {name} -- "{label}" --> {target}')
        for target in step.default:
            lines.append(f'  {name} -- "default" --> {target}')
        for target in step.on_error:
            lines.append(f'  {name} -. "error" .-> {target}')
        if step.join is not None:
            for target in step.join.on_timeout:
                lines.append(f'  {name} -. "timeout" .-> {target}')
        if step.loop is not None:
            label = _label(f"until {step.loop.until}, max {step.loop.max}")
            lines.append(f'  {name} -. "{label}" .-> {step.loop.back_to}')
        if step.terminal:
            lines.append(f"  {name} --> done((done))")
    return "\n".join(dict.fromkeys(lines))
