"""Deployment: the ``nano.yaml`` model and the process groups of each mode (offline, no NATS).

``load_config(find_config())`` reads a project's file (defaults without one); ``resolve``
turns it and the compiled tables into the :class:`ProcessGroup` list of a mode.
"""

from __future__ import annotations

from nanoservice.deploy.config import (
    MODES,
    DeployConfig,
    DurabilitySpec,
    GroupDefaults,
    GroupSpec,
    Mode,
    NatsSpec,
    ReplicaRange,
    Resources,
    parse_bytes,
)
from nanoservice.deploy.groups import EVERY_REMAINING, ProcessGroup, ReplicaPolicy, resolve
from nanoservice.deploy.load import (
    CONFIG_FILE,
    DeployError,
    LoadedConfig,
    find_config,
    load_config,
    parse_config,
)

__all__ = [
    "CONFIG_FILE",
    "EVERY_REMAINING",
    "MODES",
    "DeployConfig",
    "DeployError",
    "DurabilitySpec",
    "GroupDefaults",
    "GroupSpec",
    "LoadedConfig",
    "Mode",
    "NatsSpec",
    "ProcessGroup",
    "ReplicaPolicy",
    "ReplicaRange",
    "Resources",
    "find_config",
    "load_config",
    "parse_bytes",
    "parse_config",
    "resolve",
]
