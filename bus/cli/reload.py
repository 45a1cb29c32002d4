"""``nano up`` follows its workflow files: a saved change becomes a new table revision.

The files are polled (no extra dependency, works on every file system); when one changes,
all of them are compiled together. A version that does not compile is refused with its
errors and the live revision keeps serving; one that does is provisioned, and the hosts,
which watch the stored tables, use it for new executions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from nanoservice.errors import NanoError, WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.project import compile_files, find_workflow_files
from nanoservice.workflow.table import RoutingTable

__all__ = ["follow_files"]

log = logging.getLogger("nanoservice.reload")

Snapshot = dict[Path, float]


def _snapshot(targets: Sequence[Path]) -> Snapshot:
    try:
        files = find_workflow_files(targets)
    except NanoError:
        return {}
    stamps: Snapshot = {}
    for path in files:
        try:
            stamps[path] = path.stat().st_mtime_ns
        except OSError:
            continue
    return stamps


async def follow_files(
    targets: Sequence[Path],
    registry: Registry,
    tables: Sequence[RoutingTable],
    publish: Callable[[RoutingTable], Awaitable[None]],
    say: Callable[[str], None],
    *,
    interval: float = 0.5,
) -> None:
    """Until cancelled: publish each new revision of the workflows in ``targets``."""
    live = {t.workflow: t.revision for t in tables}
    seen = _snapshot(targets)
    while True:
        await asyncio.sleep(interval)
        now = _snapshot(targets)
        if now == seen:
            continue
        seen = now
        try:
            compiled = compile_files(list(now), registry)
        except WorkflowError as exc:
            for problem in exc.problems:
                say(f"[red]error:[/red] {problem}")
            say("[yellow]the new version was refused; the live revisions keep serving[/yellow]")
            continue
        except NanoError as exc:
            say(f"[red]error:[/red] {exc}; the live revisions keep serving")
            continue
        for table in compiled:
            if live.get(table.workflow) == table.revision:
                continue
            try:
                await publish(table)
            except Exception as exc:
                say(f"[red]error:[/red] cannot provision {table.workflow}: {exc}")
                continue
            was = live.get(table.workflow)
            live[table.workflow] = table.revision
            say(
                f"workflow [bold]{table.workflow}[/bold] ({table.source}): revision "
                f"{table.revision} live" + (f" (was {was})" if was else "")
            )
