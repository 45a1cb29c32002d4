"""systemd units: a templated unit per group (``nano-<group>@.service``, one instance per
replica), a one-shot provisioning unit, and a target that wants them all.

The NATS URL (credentials included) is read from an ``EnvironmentFile`` so it stays out of
the units. systemd has no autoscaler: an autoscaled group runs its ``max`` instances.
"""

from __future__ import annotations

from dataclasses import dataclass

from nanoservice.deploy.render import GroupPlan, Plan

__all__ = ["SystemdLayout", "render_systemd"]


@dataclass(frozen=True)
class SystemdLayout:
    """Where the project lives on the host."""

    nano: str = "/opt/nano/venv/bin/nano"
    workdir: str = "/opt/nano/app"
    env_file: str = "/etc/nano/nats.env"
    user: str = "nano"


def _instances(group: GroupPlan) -> int:
    replicas = group.group.replicas
    return max(replicas.min if replicas.fixed else replicas.max, 1)


def _group_unit(the_plan: Plan, group: GroupPlan, layout: SystemdLayout) -> str:
    limits = group.group.resources
    args = " ".join(group.host_args("--grace", f"{the_plan.grace:g}"))
    lines = [
        "# Rendered by `nano deploy render`; re-render rather than edit.",
        "[Unit]",
        f"Description=nanoservice {the_plan.project}: group {group.group.name} (replica %i)",
        "Wants=network-online.target",
        f"After=network-online.target {the_plan.project}-provision.service",
        f"PartOf={the_plan.project}.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={layout.user}",
        f"WorkingDirectory={layout.workdir}",
        f"EnvironmentFile={layout.env_file}",
        f"ExecStart={layout.nano} {args}",
        "Restart=always",
        "RestartSec=2",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={int(the_plan.grace) + 10}",
        "NoNewPrivileges=yes",
    ]
    if limits.memory is not None:
        lines.append(f"MemoryMax={limits.memory}")
    if limits.open_files is not None:
        lines.append(f"LimitNOFILE={limits.open_files}")
    if limits.address_space is not None:
        lines.append(f"LimitAS={limits.address_space}")
    if limits.cpu is not None:
        lines.append(f"LimitCPU={limits.cpu}")
    lines += ["", "[Install]", f"WantedBy={the_plan.project}.target", ""]
    return "\n".join(lines)


def _provision_unit(the_plan: Plan, layout: SystemdLayout) -> str:
    replicas = the_plan.durability.stream_replicas
    extra = f" --replicas {replicas}" if replicas else ""
    return "\n".join(
        [
            "# Rendered by `nano deploy render`; re-render rather than edit.",
            "[Unit]",
            f"Description=nanoservice {the_plan.project}: provision streams, consumers, tables",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"User={layout.user}",
            f"WorkingDirectory={layout.workdir}",
            f"EnvironmentFile={layout.env_file}",
            f"ExecStart={layout.nano} deploy apply{extra}",
            "",
        ]
    )


def _target(the_plan: Plan) -> str:
    wants = [f"{the_plan.project}-provision.service"]
    for group in the_plan.groups:
        wants += [
            f"{the_plan.project}-{group.slug}@{i}.service" for i in range(1, _instances(group) + 1)
        ]
    return "\n".join(
        [
            "# Rendered by `nano deploy render`; re-render rather than edit.",
            "[Unit]",
            f"Description=nanoservice {the_plan.project}: every process group",
            f"Wants={' '.join(wants)}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def render_systemd(the_plan: Plan, layout: SystemdLayout | None = None) -> dict[str, str]:
    """The units, by file name, and ``nats.env`` (the URL; add credentials to it)."""
    layout = layout or SystemdLayout()
    files = {
        f"{the_plan.project}.target": _target(the_plan),
        f"{the_plan.project}-provision.service": _provision_unit(the_plan, layout),
        "nats.env": "# Install as " + layout.env_file + " (mode 0600): the NATS URL, "
        "credentials included (nats://user:password@host:4222).\n"
        f"NATS_URL={the_plan.nats_url or 'nats://127.0.0.1:4222'}\n",
    }
    for group in the_plan.groups:
        files[f"{the_plan.project}-{group.slug}@.service"] = _group_unit(the_plan, group, layout)
    return files
