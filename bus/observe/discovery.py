"""Prometheus file-based service discovery: the file listing every process's ``/metrics``
target, rewritten whole (atomically) whenever the set of processes changes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["DEFAULT_SD_FILE", "Target", "write_file_sd"]

DEFAULT_SD_FILE = Path(".nano/prometheus/targets.json")
"""Where ``nano up`` writes it (``infra/prometheus/prometheus.yml`` reads it)."""

Target = tuple[str, Mapping[str, str]]
"""A ``host:port`` and its labels (e.g. ``{"process": "hello.greet-0"}``)."""


def write_file_sd(path: Path, targets: Iterable[Target], *, job: str = "nanoservice") -> Path:
    """Write ``targets`` as a ``file_sd_configs`` JSON file at ``path``, one group per target
    (labels ``job`` and the target's own), replacing the file in one rename so Prometheus
    never reads half of it."""
    groups = [
        {"targets": [address], "labels": {"job": job, **dict(labels)}}
        for address, labels in targets
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(groups, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
