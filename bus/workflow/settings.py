"""A project's ``nano.yaml``, the part node discovery needs: the project's name and which
distribution provides a contested node. The rest of the file (mode, groups, ...) is the
deployment model's (``nanoservice.deploy``), which validates every key with its line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nanoservice.errors import NanoError

__all__ = ["SETTINGS_FILE", "ProjectSettings", "load_settings"]

SETTINGS_FILE = Path("nano.yaml")
_KEYS = ("name", "prefer")


@dataclass(frozen=True)
class ProjectSettings:
    """What ``nano.yaml`` says; every key is optional (a missing file is all defaults)."""

    name: str | None = None
    prefer: dict[str, str] = field(default_factory=dict)
    """Node name -> the distribution to take it from, when two declare it."""


def load_settings(path: Path = SETTINGS_FILE) -> ProjectSettings:
    """Read ``path`` (none there: defaults); a bad file is one :class:`NanoError` line."""
    if not path.is_file():
        return ProjectSettings()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise NanoError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict):
        raise NanoError(f"{path}: expected a mapping of settings ({', '.join(_KEYS)})")
    prefer = data.get("prefer") or {}
    if not isinstance(prefer, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prefer.items()
    ):
        raise NanoError(f"{path}: prefer must map node names to distribution names")
    name = data.get("name")
    return ProjectSettings(name=None if name is None else str(name), prefer=dict(prefer))
