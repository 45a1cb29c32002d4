"""The supervisor's state on disk (``.nano/processes.json``), read by ``nano ps``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nanoservice.supervise.limits import rss_bytes
from nanoservice.supervise.supervisor import Replica

__all__ = ["STATE_NAME", "alive", "read_state", "write_state"]

STATE_NAME = "processes.json"


def write_state(path: Path, replicas: Iterable[Replica], *, mode: str) -> None:
    """Atomically replace ``path`` with the replicas' state (and this supervisor's pid)."""
    data = {
        "supervisor": os.getpid(),
        "mode": mode,
        "written": time.time(),
        "processes": [r.info() for r in replicas],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (0 or less: no)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(path: Path) -> dict[str, Any] | None:
    """The state, with live memory and uptime filled in; None without a file.

    A supervisor that is gone leaves its file: its processes are then shown ``gone``.
    """
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    running = alive(int(data.get("supervisor", 0) or 0))
    data["running"] = running
    now = time.time()
    for proc in data.get("processes", []):
        pid = proc.get("pid")
        live = running and pid is not None and proc.get("state") in ("starting", "ready")
        if live and alive(pid):
            proc["rss"] = rss_bytes(pid)
            proc["uptime"] = round(now - float(proc.get("started") or now), 1)
        else:
            proc["uptime"] = None
            if not running:
                proc["state"] = "gone"
    return data
