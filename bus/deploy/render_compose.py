"""A compose file: one service per group (with its replicas), a NATS service with JetStream
on a named volume, and a one-shot provisioning service the groups wait for.

Compose has no autoscaler: an autoscaled group runs its ``max`` processes (scale by hand
with ``docker compose up --scale``).
"""

from __future__ import annotations

from typing import Any

from nanoservice.deploy.render import GroupPlan, Plan, dump_yaml

__all__ = ["NATS_IMAGE", "compose_file", "nats_conf", "render_compose"]

NATS_IMAGE = "nats:2.15.1-alpine"
"""The official image, at the server version the test suite runs (pin a digest in production)."""


def nats_conf(the_plan: Plan) -> str:
    """The server's config: JetStream on ``/data``, monitoring on 8222, the fsync interval."""
    lines = [
        "# Rendered by `nano deploy render`.",
        "port: 4222",
        "http_port: 8222",
        "jetstream {",
        '  store_dir: "/data"',
    ]
    if the_plan.durability.sync_interval is not None:
        lines.append(f'  sync_interval: "{the_plan.durability.sync_interval}"')
    return "\n".join([*lines, "}", ""])


def _service(the_plan: Plan, group: GroupPlan) -> dict[str, Any]:
    replicas = group.group.replicas
    limits = group.group.resources
    probe = ["CMD", "nano", "deploy", "probe"]
    if not group.group.every_step:
        probe += [a for s in group.group.steps for a in ("--steps", s)]
    service: dict[str, Any] = {
        "image": the_plan.image,
        "command": group.host_args("--grace", f"{the_plan.grace:g}"),
        "environment": {"NATS_URL": "nats://nats:4222"},
        "depends_on": {"provision": {"condition": "service_completed_successfully"}},
        "restart": "unless-stopped",
        "stop_grace_period": f"{int(the_plan.grace) + 10}s",
        "healthcheck": {"test": probe, "interval": "30s", "timeout": "10s", "retries": 3},
        "deploy": {"replicas": max(replicas.max if not replicas.fixed else replicas.min, 1)},
    }
    if limits.memory is not None:
        service["deploy"]["resources"] = {"limits": {"memory": str(limits.memory)}}
    ulimits = {
        name: value
        for name, value in (
            ("nofile", limits.open_files),
            ("as", limits.address_space),
            ("cpu", limits.cpu),
        )
        if value is not None
    }
    if ulimits:
        service["ulimits"] = ulimits
    return service


def compose_file(the_plan: Plan) -> dict[str, Any]:
    services: dict[str, Any] = {
        "nats": {
            "image": NATS_IMAGE,
            "command": ["-c", "/etc/nats/nats.conf"],
            "ports": ["4222:4222", "8222:8222"],
            "volumes": ["nats-data:/data", "./nats.conf:/etc/nats/nats.conf:ro"],
            "restart": "unless-stopped",
        },
        "provision": {
            "image": the_plan.image,
            "command": ["deploy", "apply", "--replicas", "1"],  # one server
            "environment": {"NATS_URL": "nats://nats:4222"},
            "depends_on": ["nats"],
            "restart": "on-failure",
        },
    }
    for group in the_plan.groups:
        name = group.slug if group.slug not in services else f"group-{group.slug}"
        services[name] = _service(the_plan, group)
    return {"name": the_plan.project, "services": services, "volumes": {"nats-data": {}}}


def render_compose(the_plan: Plan) -> dict[str, str]:
    """``compose.yaml`` and the ``nats.conf`` it mounts."""
    return {"compose.yaml": dump_yaml(compose_file(the_plan)), "nats.conf": nats_conf(the_plan)}
