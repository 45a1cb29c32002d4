"""``nano ps``: the processes ``nano up`` supervises in this folder (from its state file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nanoservice.cli.common import console, die

__all__ = ["ps_command"]


def ps_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_dir: Annotated[Path, typer.Option(help="The folder `nano up` keeps its state in.")] = Path(
        ".nano"
    ),
) -> None:
    """List the supervised processes: group, replica, steps, pid, state, restarts, uptime,
    memory."""
    from nanoservice.supervise.state import STATE_NAME, read_state

    path = data_dir / STATE_NAME
    state = read_state(path)
    if state is None or not state.get("running"):
        raise die(
            f"no supervised processes: no `nano up` running here in a supervised mode "
            f"(no live {path})",
            1,
        )
    processes: list[dict[str, Any]] = state["processes"]
    if as_json:
        print(json.dumps({"mode": state.get("mode"), "processes": processes}, indent=2))
        return
    rows = [("GROUP", "REPLICA", "PID", "STATE", "RESTARTS", "UPTIME", "MEMORY", "STEPS")]
    for proc in processes:
        rows.append(
            (
                str(proc["group"]),
                str(proc["replica"]),
                str(proc["pid"] or "-"),
                str(proc["state"]),
                str(proc["restarts"]),
                _duration(proc.get("uptime")),
                _size(proc.get("rss")),
                ",".join(proc.get("steps") or []) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    console.print(f"mode {state.get('mode')}, {len(processes)} processes", soft_wrap=True)
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        console.print("  ".join([*cells, row[-1]]), soft_wrap=True, markup=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _size(rss: int | None) -> str:
    return "-" if rss is None else f"{rss / 2**20:.0f}MiB"
