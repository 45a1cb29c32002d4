"""Kubernetes manifests: a Deployment per group, a KEDA ScaledObject per autoscaled group,
the provisioning Job, the NATS Secret, and values for the official NATS Helm chart.

NATS itself is the chart's (``helm install nats nats/nats -f nats-values.yaml``); the
manifests only point at it: the URL (credentials included, ``nats://user:pass@host``) comes
from the Secret ``nano-nats``, and KEDA's ``nats-jetstream`` scaler reads the consumers'
backlog from the server's monitoring endpoint, which the values turn on.
"""

from __future__ import annotations

from typing import Any

from nanoservice.deploy.render import GroupPlan, Plan, dump_yaml, quantity

__all__ = [
    "NATS_MONITOR",
    "NATS_SECRET",
    "NATS_URL",
    "deployment",
    "helm_values",
    "provision_job",
    "render_k8s",
    "scaled_object",
]

NATS_SECRET = "nano-nats"
NATS_URL = "nats://nats.nats.svc.cluster.local:4222"
"""The client URL of the chart installed as release ``nats`` in namespace ``nats``."""
NATS_MONITOR = "nats-headless.nats.svc.cluster.local:8222"
"""The chart's headless service: on a cluster KEDA's scaler asks ``<pod>.<this host>`` (the
consumer's leader, the only node whose backlog count is current), which resolves only
through the headless service."""
CLUSTER_REPLICAS = 3
_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _labels(the_plan: Plan, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": the_plan.project,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "nano-deploy",
    }


def _env() -> list[dict[str, Any]]:
    return [
        {
            "name": "NATS_URL",
            "valueFrom": {"secretKeyRef": {"name": NATS_SECRET, "key": "url"}},
        }
    ]


def _pod(labels: dict[str, str], container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [container],
        },
    }


def _probe(group: GroupPlan, *, period: int, failures: int) -> dict[str, Any]:
    steps = [a for s in group.group.steps for a in ("--steps", s)]
    command = ["nano", "deploy", "probe"]
    if not group.group.every_step:
        command += steps
    return {
        "exec": {"command": command},
        "initialDelaySeconds": 5,
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def deployment(the_plan: Plan, group: GroupPlan) -> dict[str, Any]:
    """The Deployment of one group: its ``nano host`` processes."""
    name = f"{the_plan.project}-{group.slug}"
    labels = {**_labels(the_plan, group.slug), "nanoservice.dev/group": group.slug}
    resources: dict[str, Any] = {}
    memory = group.group.resources.memory
    if memory is not None:
        resources = {
            "requests": {"memory": quantity(memory)},
            "limits": {"memory": quantity(memory)},
        }
    container: dict[str, Any] = {
        "name": "host",
        "image": the_plan.image,
        "args": group.host_args("--grace", f"{the_plan.grace:g}"),
        "env": _env(),
        "resources": resources,
        "securityContext": _SECURITY,
        # Ready once NATS answers and the group's consumers exist (after the Job ran);
        # restarted only after five minutes of that failing (a host reconnects by itself).
        "readinessProbe": _probe(group, period=20, failures=2),
        "livenessProbe": _probe(group, period=30, failures=10),
    }
    pod = _pod(labels, container)
    pod["spec"]["terminationGracePeriodSeconds"] = int(the_plan.grace) + 10
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": pod}
    if group.group.replicas.fixed:  # an autoscaled group's count is KEDA's to set
        spec = {"replicas": group.group.replicas.initial, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def scaled_object(the_plan: Plan, group: GroupPlan, monitor: str = NATS_MONITOR) -> dict[str, Any]:
    """KEDA's ``nats-jetstream`` scaler on each of the group's consumers (KEDA scales to
    the largest wanted count of its triggers)."""
    name = f"{the_plan.project}-{group.slug}"
    replicas = group.group.replicas
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "labels": _labels(the_plan, group.slug)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": replicas.min,
            "maxReplicaCount": replicas.max,
            "pollingInterval": max(1, round(replicas.interval)),
            "cooldownPeriod": max(1, round(replicas.cooldown)),
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": max(0, round(replicas.cooldown))
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "nats-jetstream",
                    "metadata": {
                        "natsServerMonitoringEndpoint": monitor,
                        "account": "$G",
                        "stream": stream,
                        "consumer": consumer,
                        "lagThreshold": str(replicas.target),
                    },
                }
                for stream, consumer in group.consumers
            ],
        },
    }


def provision_job(the_plan: Plan, replicas: int) -> dict[str, Any]:
    """A one-shot Job: ``nano deploy apply`` (streams, consumers, routing tables)."""
    labels = _labels(the_plan, "provision")
    container = {
        "name": "apply",
        "image": the_plan.image,
        "args": ["deploy", "apply", "--replicas", str(replicas)],
        "env": _env(),
        "securityContext": _SECURITY,
    }
    pod = _pod(labels, container)
    pod["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{the_plan.project}-provision", "labels": labels},
        "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 3600, "template": pod},
    }


def nats_secret(the_plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NATS_SECRET, "labels": _labels(the_plan, "nats")},
        "type": "Opaque",
        "stringData": {"url": NATS_URL},
    }


def helm_values(the_plan: Plan) -> dict[str, Any]:
    """Values for the official chart (nats-io/k8s, ``nats/nats``): a 3-node cluster,
    JetStream on file storage, monitoring on (KEDA's scaler reads it)."""
    jetstream: dict[str, Any] = {
        "enabled": True,
        "fileStore": {"enabled": True, "dir": "/data", "pvc": {"enabled": True, "size": "10Gi"}},
        "memoryStore": {"enabled": False},
    }
    if the_plan.durability.sync_interval is not None:
        jetstream["merge"] = {"sync_interval": the_plan.durability.sync_interval}
    return {
        "config": {
            "cluster": {"enabled": True, "replicas": CLUSTER_REPLICAS},
            "jetstream": jetstream,
            "monitor": {"enabled": True, "port": 8222},
        }
    }


def render_k8s(the_plan: Plan) -> dict[str, str]:
    """``nats-values.yaml`` (Helm), ``nats-secret.yaml``, ``provision-job.yaml`` and one
    ``group-<name>.yaml`` per group (its Deployment, and ScaledObject if autoscaled)."""
    replicas = the_plan.durability.stream_replicas or CLUSTER_REPLICAS
    files = {
        "nats-values.yaml": dump_yaml(
            helm_values(the_plan),
            comment="# helm repo add nats https://nats-io.github.io/k8s/helm/charts/\n"
            "# helm install nats nats/nats --namespace nats --create-namespace "
            "-f nats-values.yaml\n",
        ),
        "nats-secret.yaml": dump_yaml(
            nats_secret(the_plan),
            comment="# The NATS URL the hosts use; put credentials in it "
            "(nats://user:password@host:4222) and keep the edited file out of git.\n",
        ),
        "provision-job.yaml": dump_yaml(provision_job(the_plan, replicas)),
    }
    for group in the_plan.groups:
        documents: list[dict[str, Any]] = [deployment(the_plan, group)]
        if not group.group.replicas.fixed and group.consumers:
            documents.append(scaled_object(the_plan, group))
        limits = group.group.resources
        unmapped = [
            f"{field}={value}"
            for field, value in (
                ("address_space", limits.address_space),
                ("cpu", limits.cpu),
                ("open_files", limits.open_files),
            )
            if value is not None
        ]
        comment = (
            f"# nano.yaml limits with no Kubernetes field (not applied): {', '.join(unmapped)}\n"
            if unmapped
            else ""
        )
        files[f"group-{group.slug}.yaml"] = dump_yaml(*documents, comment=comment)
    return files
