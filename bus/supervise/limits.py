"""Limits in the child (``setrlimit`` between fork and exec) and reading a process's memory."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from nanoservice.supervise.spec import Limits

__all__ = ["describe_exit", "preexec", "rss_bytes"]

_PR_SET_PDEATHSIG = 1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def preexec(limits: Limits) -> Callable[[], None]:
    """A ``preexec_fn`` applying ``limits`` and asking Linux to SIGTERM the child when the
    supervisor dies (so a ``kill -9`` of ``nano up`` leaves no orphan).

    Everything the child needs is looked up here, in the parent: between fork and exec the
    child is a copy of the parent, often already past the address-space limit it is about to
    get, so nothing may allocate there once that limit is set (an import would fail)."""
    prctl = _prctl()

    def apply() -> None:  # pragma: no cover - runs in the child, between fork and exec
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if limits.cpu is not None:
            # soft: SIGXCPU at the limit; hard a little later: SIGKILL if it is ignored
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu + 5))
        if limits.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        if limits.address_space is not None:  # last: the exec'd program starts under it
            resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))

    return apply


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or None where there is none (not Linux)."""
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (Linux ``/proc``), None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * _PAGE if len(fields) > 1 else None


def describe_exit(returncode: int) -> str:
    """``exit code 1``, ``killed by SIGKILL``, ``SIGXCPU (its CPU-time limit)``."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if name == "SIGXCPU":
        return "SIGXCPU (its CPU-time limit)"
    return f"killed by {name}"
