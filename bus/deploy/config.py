"""The ``nano.yaml`` model: how a project is deployed (mode, groups, replicas, resources).

A project's ``nano.yaml`` says which **mode** it runs in and how steps group into
processes. Switching modes is one line in this file (or ``nano up --mode``); workflows and
nodes never change. Field descriptions here are the source of the generated reference in
docs/deployment.md and of docs/nano.schema.json.

Units: ``memory`` and ``address_space`` are bytes, or a number with a suffix ``K``/``M``/``G``
(powers of 1000) or ``Ki``/``Mi``/``Gi`` (powers of 1024); ``cpu`` is seconds of CPU time;
``cooldown``/``interval`` are seconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "MODES",
    "DeployConfig",
    "DurabilitySpec",
    "GroupDefaults",
    "GroupSpec",
    "Mode",
    "NatsSpec",
    "ReplicaRange",
    "Resources",
    "parse_bytes",
]

Mode = Literal["monolith", "micro", "nano"]
MODES: tuple[Mode, ...] = ("monolith", "micro", "nano")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.I)
_FACTORS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_bytes(value: Any) -> Any:
    """``"512Mi"`` -> 536870912; ints pass; anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a size (e.g. 512Mi, 2G, 1048576)")
        return int(float(match.group(1)) * _FACTORS[(match.group(2) or "").lower()])
    return value


Bytes = Annotated[int, BeforeValidator(parse_bytes, json_schema_input_type=int | str), Field(gt=0)]
_INTERVAL = r"^(always|\d+(ms|s|m|h))$"
_TOKEN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Resources(_Spec):
    """Per-process limits of a group, applied to each of its processes (each replica)."""

    memory: Bytes | None = Field(
        None,
        description="Resident memory (RSS) limit: a process over it is killed and restarted, "
        "and the log says so. Bytes or 512Mi, 1G...",
    )
    address_space: Bytes | None = Field(
        None,
        description="Hard address-space limit (RLIMIT_AS) set in the child: an allocation "
        "past it fails with MemoryError. Bytes or 2Gi...; leave generous (threads reserve "
        "virtual memory).",
    )
    cpu: int | None = Field(
        None,
        gt=0,
        description="CPU-time limit in seconds (RLIMIT_CPU): the process is then killed "
        "(and restarted).",
    )
    open_files: int | None = Field(
        None, ge=16, description="Open file descriptors limit (RLIMIT_NOFILE)."
    )

    def merged(self, fallback: Resources) -> Resources:
        """These limits, with ``fallback``'s where this one sets none."""
        mine = self.model_dump(exclude_none=True)
        return Resources(**{**fallback.model_dump(exclude_none=True), **mine})


class ReplicaRange(_Spec):
    """Autoscaled replicas: between ``min`` and ``max`` processes, from the backlog."""

    min: int = Field(1, ge=0, description="Fewest processes (an idle group drops back to it).")
    max: int = Field(..., ge=1, description="Most processes.")
    target: int = Field(
        100,
        ge=1,
        description="Backlog per process aimed at: pending + ack-pending messages of the "
        "group's consumers, divided by this, is the wanted count.",
    )
    cooldown: float = Field(
        30.0, ge=0, description="Seconds after a scaling decision before the next one."
    )
    interval: float = Field(2.0, gt=0, description="Seconds between backlog reads.")

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


def _as_range(value: Any) -> Any:
    """``replicas: 3`` is ``{min: 3, max: 3}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"replicas must be at least 1, not {value}")
        return {"min": value, "max": value}
    return value


Replicas = Annotated[
    ReplicaRange, BeforeValidator(_as_range, json_schema_input_type=int | ReplicaRange)
]


class GroupDefaults(_Spec):
    """What every process group gets unless its own entry says otherwise (nano and
    monolith mode groups included)."""

    replicas: Replicas = Field(
        1, validate_default=True, description="Processes per group: a number, or min/max."
    )
    resources: Resources = Field(default_factory=Resources, description="Per-process limits.")


class GroupSpec(_Spec):
    """A named group of steps that run together in one process (micro mode); in nano mode
    its steps keep the group's replicas and resources, one process per step."""

    steps: list[str] = Field(
        default_factory=list,
        description="`workflow` (all its steps), `workflow.step`, or `*` (every step no "
        "other group names).",
    )
    nodes: list[str] = Field(
        default_factory=list, description="Node names: every step that uses one of them."
    )
    replicas: Replicas | None = Field(
        None, description="Processes of this group: a number, or min/max (default: defaults)."
    )
    resources: Resources | None = Field(
        None, description="Per-process limits (unset ones: defaults)."
    )

    @model_validator(mode="after")
    def _selects(self) -> GroupSpec:
        if not self.steps and not self.nodes:
            raise ValueError("a group needs `steps` or `nodes`")
        return self


class NatsSpec(_Spec):
    """Which NATS to use: a server you run (``url``) or one ``nano up`` starts."""

    url: str | None = Field(
        None, description="Use this server (comma-separated URLs); nothing is started."
    )
    cluster: bool = Field(False, description="Start a local 3-node cluster (R3 streams).")
    port: int | None = Field(
        None, ge=0, le=65535, description="Client port of the local server (0: any free one)."
    )


class DurabilitySpec(_Spec):
    """How hard the local server and the streams hold on to acknowledged messages."""

    stream_replicas: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Replicas of every workflow stream (default: 1, 3 on a cluster).",
    )
    sync_interval: str | None = Field(
        None,
        pattern=_INTERVAL,
        description="JetStream fsync interval of the local server: 1s, 100ms, always "
        "(nats-server's default is 2m).",
    )


class DeployConfig(_Spec):
    """``nano.yaml`` at the project's root (without one: monolith, one local server)."""

    name: str | None = Field(None, description="The project's name.")
    prefer: dict[str, str] = Field(
        default_factory=dict,
        description="Node name -> the distribution to take it from, when two installed "
        "distributions declare it (docs/authoring.md).",
    )
    mode: Mode = Field("monolith", description="`monolith`, `micro` or `nano`.")
    per: Literal["step", "node"] = Field(
        "step", description="Nano mode: one process per `step`, or per `node` (its steps)."
    )
    nats: NatsSpec = Field(default_factory=NatsSpec, description="The NATS server.")
    durability: DurabilitySpec = Field(
        default_factory=DurabilitySpec, description="Stream replicas and fsync."
    )
    defaults: GroupDefaults = Field(
        default_factory=GroupDefaults, description="Replicas and resources of every group."
    )
    groups: dict[Annotated[str, Field(pattern=_TOKEN)], GroupSpec] = Field(
        default_factory=dict,
        description="Micro mode's processes, by name (each name 1-64 letters, digits, '_' or '-').",
    )
