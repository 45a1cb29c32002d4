"""Rendering deployment files: what every target shares (offline, no NATS).

:func:`plan` turns ``nano.yaml`` and the compiled tables into a :class:`Plan` (the process
groups of a mode, each with a name safe for Kubernetes, compose and systemd, and the
durable consumers it pulls from); :func:`render` gives the files of one target as
``{relative path: text}`` and :func:`write` puts them in a folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from nanoservice.deploy.config import DurabilitySpec, Mode
from nanoservice.deploy.groups import ProcessGroup, resolve
from nanoservice.deploy.load import LoadedConfig
from nanoservice.workflow.table import RoutingTable

__all__ = [
    "DEFAULT_IMAGE",
    "TARGETS",
    "GroupPlan",
    "Plan",
    "Target",
    "dump_yaml",
    "plan",
    "quantity",
    "render",
    "slug",
    "write",
]

Target = Literal["k8s", "compose", "systemd"]
TARGETS: tuple[Target, ...] = ("k8s", "compose", "systemd")
DEFAULT_IMAGE = "nano-project:latest"
HEADER = "# Rendered by `nano deploy render`; re-render rather than edit.\n"
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class GroupPlan:
    """One process group as the targets need it."""

    group: ProcessGroup
    slug: str
    """Lowercase letters, digits and '-', unique in the plan (Kubernetes, compose, systemd)."""
    consumers: tuple[tuple[str, str], ...]
    """``(stream, consumer)`` of each step it runs: what an autoscaler watches."""

    def host_args(self, *extra: str) -> list[str]:
        return [*self.group.host_args(), *extra]


@dataclass(frozen=True)
class Plan:
    """Everything a target renders from."""

    project: str
    mode: Mode
    image: str
    groups: tuple[GroupPlan, ...]
    durability: DurabilitySpec
    nats_url: str | None = None
    """``nats.url`` of ``nano.yaml``, if set (the systemd target's default URL)."""
    grace: float = 20.0
    """Seconds a stopping host lets in-flight messages settle (``nano host --grace``)."""


def slug(name: str, taken: set[str] | None = None) -> str:
    """``hello.greet`` -> ``hello-greet``: a DNS-1123 label (at most 40 characters, so
    prefixes fit), made unique against ``taken`` with a short hash."""
    base = _NOT_DNS.sub("-", name.lower()).strip("-")[:40].strip("-") or "group"
    if taken is None or base not in taken:
        return base
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{base[:33].strip('-')}-{digest}"


def plan(
    loaded: LoadedConfig,
    tables: Sequence[RoutingTable],
    *,
    mode: Mode | None = None,
    project: str = "nano",
    image: str = DEFAULT_IMAGE,
) -> Plan:
    """The groups of ``mode`` (default: the file's) with their names and consumers.

    Raises :class:`~nanoservice.deploy.load.DeployError` as :func:`resolve` does.
    """
    groups = resolve(loaded, tables, mode)
    by_step = {
        f"{t.workflow}.{s.name}": (t.stream.name, s.consumer)
        for t in tables
        for s in t.steps.values()
    }
    taken: set[str] = set()
    planned = []
    for group in groups:
        name = slug(group.name, taken)
        taken.add(name)
        consumers = tuple(by_step[s] for s in group.steps if s in by_step)
        planned.append(GroupPlan(group, name, consumers))
    return Plan(
        project=slug(project),
        mode=mode or loaded.config.mode,
        image=image,
        groups=tuple(planned),
        durability=loaded.config.durability,
        nats_url=loaded.config.nats.url,
    )


def quantity(size: int) -> str:
    """Bytes as a Kubernetes/compose quantity: ``536870912`` -> ``512Mi``."""
    for suffix, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a value used twice is written twice, never as an anchor and alias."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_yaml(*documents: object, comment: str = "") -> str:
    """YAML documents separated by ``---``, after the rendered-file header."""
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100) for d in documents)
    return HEADER + comment + body


def render(target: Target, the_plan: Plan) -> dict[str, str]:
    """The files of ``target`` for ``the_plan``: relative path -> text."""
    renderers: dict[str, Callable[[Plan], dict[str, str]]]
    from nanoservice.deploy.render_compose import render_compose
    from nanoservice.deploy.render_k8s import render_k8s
    from nanoservice.deploy.render_systemd import render_systemd

    renderers = {"k8s": render_k8s, "compose": render_compose, "systemd": render_systemd}
    return renderers[target](the_plan)


def write(files: dict[str, str], out: Path) -> list[Path]:
    """Write ``files`` under ``out`` (created); returns the paths written, sorted."""
    written = []
    for name, text in sorted(files.items()):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
