"""From ``nano.yaml`` and the compiled tables to the concrete process groups of a mode.

- **monolith**: one group, ``monolith``, running every step (new ones too);
- **micro**: the groups of the file; ``*`` takes every step no other group names;
- **nano**: one group per step (``<workflow>.<step>``), or per node with ``per: node``;
  each keeps the replicas and resources of the file group its step is in, if any.

The result is plain data, the same for ``nano up``'s supervisor and for the rendered
deployment manifests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nanoservice.deploy.config import DeployConfig, GroupSpec, Mode, ReplicaRange, Resources
from nanoservice.deploy.load import DeployError, LoadedConfig
from nanoservice.errors import Problem
from nanoservice.workflow.table import RoutingTable

__all__ = ["EVERY_REMAINING", "ProcessGroup", "ReplicaPolicy", "resolve"]

EVERY_REMAINING = "*"


@dataclass(frozen=True)
class ReplicaPolicy:
    """How many processes a group runs: fixed (``min == max``) or autoscaled."""

    min: int
    max: int
    target: int = 100
    cooldown: float = 30.0
    interval: float = 2.0

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    @property
    def initial(self) -> int:
        return max(self.min, 1) if self.fixed else self.min

    @classmethod
    def of(cls, replicas: ReplicaRange) -> ReplicaPolicy:
        return cls(
            min=replicas.min,
            max=replicas.max,
            target=replicas.target,
            cooldown=replicas.cooldown,
            interval=replicas.interval,
        )


@dataclass(frozen=True)
class ProcessGroup:
    """One kind of process: the steps it runs, how many of it, and its limits."""

    name: str
    steps: tuple[str, ...]
    """``workflow.step`` names, sorted."""
    replicas: ReplicaPolicy
    resources: Resources
    every_step: bool = False
    """Runs every step, those of later revisions and workflows too (monolith)."""

    def host_args(self) -> list[str]:
        """The ``nano host`` arguments of one of its processes."""
        if self.every_step:
            return ["host"]
        return ["host", *(a for s in self.steps for a in ("--steps", s))]


def resolve(
    loaded: LoadedConfig, tables: Sequence[RoutingTable], mode: Mode | None = None
) -> list[ProcessGroup]:
    """The process groups of ``mode`` (default: the file's) for ``tables``.

    Raises :class:`DeployError` with every problem (file and line): a selector matching no
    step, a step claimed by two groups, steps no group takes in micro mode.
    """
    config = loaded.config
    mode = mode or config.mode
    every = [f"{t.workflow}.{s}" for t in tables for s in t.steps]
    if mode == "monolith":
        default = config.defaults
        return [
            ProcessGroup(
                "monolith",
                tuple(sorted(every)),
                ReplicaPolicy.of(default.replicas),
                default.resources,
                every_step=True,
            )
        ]
    owner, problems = _assign(loaded, tables)
    if mode == "micro":
        if not config.groups:
            problems.append(
                loaded.doc.problem(
                    "mode micro needs `groups`",
                    ("mode",),
                    hint="e.g. groups: {all: {steps: ['*']}}",
                )
            )
        left = [s for s in every if s not in owner]
        if left and config.groups:
            problems.append(
                loaded.doc.problem(
                    f"no group runs {', '.join(sorted(left))}",
                    ("groups",),
                    hint="name them in a group, or add `steps: ['*']` to one",
                )
            )
    if problems:
        raise DeployError(problems)
    if mode == "micro":
        return [
            _group(name, [s for s in every if owner[s] == name], config, spec)
            for name, spec in config.groups.items()
            if any(owner[s] == name for s in every)
        ]
    units: dict[str, list[str]] = {}
    nodes = {f"{t.workflow}.{s.name}": s.node or "call" for t in tables for s in t.steps.values()}
    for step in every:
        units.setdefault(nodes[step] if config.per == "node" else step, []).append(step)
    return [
        _group(
            unit,
            steps,
            config,
            config.groups.get(owner.get(steps[0], "")),
        )
        for unit, steps in units.items()
    ]


def _group(
    name: str, steps: list[str], config: DeployConfig, spec: GroupSpec | None
) -> ProcessGroup:
    default = config.defaults
    replicas = spec.replicas if spec is not None and spec.replicas is not None else default.replicas
    own = spec.resources if spec is not None and spec.resources is not None else Resources()
    return ProcessGroup(
        name, tuple(sorted(steps)), ReplicaPolicy.of(replicas), own.merged(default.resources)
    )


def _assign(
    loaded: LoadedConfig, tables: Sequence[RoutingTable]
) -> tuple[dict[str, str], list[Problem]]:
    """Which file group each step belongs to, and the problems of the selectors."""
    doc, problems = loaded.doc, []
    owner: dict[str, str] = {}
    rest: str | None = None
    by_workflow = {t.workflow: [f"{t.workflow}.{s}" for s in t.steps] for t in tables}
    by_node: dict[str, list[str]] = {}
    for t in tables:
        for s in t.steps.values():
            if s.node is not None:
                by_node.setdefault(s.node, []).append(f"{t.workflow}.{s.name}")
    every = {s for steps in by_workflow.values() for s in steps}
    for name, spec in loaded.config.groups.items():
        chosen: list[str] = []
        for i, selector in enumerate(spec.steps):
            where = ("groups", name, "steps", i)
            if selector == EVERY_REMAINING:
                if rest is not None:
                    problems.append(
                        doc.problem(f"group '{name}': `*` is also in group '{rest}'", where)
                    )
                rest = name
            elif selector in by_workflow:
                chosen += by_workflow[selector]
            elif selector in every:
                chosen.append(selector)
            else:
                problems.append(
                    doc.problem(
                        f"group '{name}': no step or workflow '{selector}'",
                        where,
                        hint=f"workflows: {', '.join(sorted(by_workflow)) or 'none'}",
                    )
                )
        for i, node in enumerate(spec.nodes):
            if node not in by_node:
                problems.append(
                    doc.problem(
                        f"group '{name}': no step uses node '{node}'",
                        ("groups", name, "nodes", i),
                        hint=f"nodes in use: {', '.join(sorted(by_node)) or 'none'}",
                    )
                )
            chosen += by_node.get(node, [])
        for step in dict.fromkeys(chosen):
            if step in owner and owner[step] != name:
                problems.append(
                    doc.problem(
                        f"step {step} is in group '{owner[step]}' and in group '{name}'",
                        ("groups", name),
                    )
                )
                continue
            owner[step] = name
    if rest is not None:
        for step in sorted(every - owner.keys()):
            owner[step] = rest
    return owner, problems
