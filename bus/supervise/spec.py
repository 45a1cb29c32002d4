"""What the supervisor runs: a generic process spec (a host, a bridge, a scheduler...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Backoff", "Limits", "ProcessSpec"]


@dataclass(frozen=True)
class Limits:
    """Per-process limits: ``memory`` is watched (RSS, kill and restart), the others are
    set in the child with ``setrlimit`` (address space, CPU seconds, open files)."""

    memory: int | None = None
    address_space: int | None = None
    cpu: int | None = None
    open_files: int | None = None


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` doubling up to ``max``; a process that lived at least
    ``reset_after`` seconds starts over at ``initial``; ``give_up`` quick deaths in a row
    and the supervisor stops restarting it and says so."""

    initial: float = 0.5
    factor: float = 2.0
    max: float = 30.0
    reset_after: float = 10.0
    give_up: int = 5


@dataclass(frozen=True)
class ProcessSpec:
    """One kind of supervised process, run as ``replicas`` copies by the supervisor.

    ``ready`` is the start of the stdout line by which the process says it is serving
    (None: ready once started). Each copy gets ``NANO_GROUP`` and ``NANO_REPLICA`` in its
    environment.
    """

    name: str
    argv: tuple[str, ...]
    steps: tuple[str, ...] = ()
    """What it serves, for ``nano ps`` (``workflow.step`` names)."""
    limits: Limits = field(default_factory=Limits)
    backoff: Backoff = field(default_factory=Backoff)
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready: str | None = "ready"
