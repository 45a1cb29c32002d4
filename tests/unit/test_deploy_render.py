"""``nano deploy render``: every target and mode of the sample project passes its schema check.

Kubernetes objects against the Kubernetes JSON schemas (``kubernetes-validate``, strict:
unknown fields fail), the ScaledObject against KEDA's CRD schema (vendored, made strict the
same way), the compose file against the Compose specification's schema, and the systemd
units with ``systemd-analyze verify`` (any warning fails).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from nanoservice.deploy import parse_config
from nanoservice.deploy.render import Plan, plan, render, slug
from nanoservice.deploy.render_systemd import SystemdLayout, render_systemd
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "schemas"
REGISTRY = Registry.discover()
HELLO = compile_file(ROOT / "workflows" / "hello.yaml", REGISTRY)
TWO = compile_text(
    "name: two\nsteps:\n  a:\n    node: transform\n    with: {expr: 'input'}\n    next: b_2\n"
    "  b_2:\n    node: log\n",
    REGISTRY,
)
TABLES = [HELLO, TWO]
CONFIG = """\
mode: micro
groups:
  front:
    steps: [hello.normalize, hello.greet]
    resources: {memory: 256Mi, open_files: 1024, cpu: 600, address_space: 4Gi}
  slow:
    nodes: [log]
    replicas: {min: 0, max: 4, target: 50, cooldown: 10}
  rest:
    steps: ['*']
    replicas: 2
defaults:
  resources: {memory: 1Gi}
durability:
  sync_interval: 1s
"""
MODES = ("monolith", "micro", "nano")
K8S = latest_version()


def _strict(schema: Any) -> Any:
    """A CRD schema as the API server applies it to unknown fields: refused, not pruned."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


KEDA = _strict(json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text()))
COMPOSE = jsonschema.Draft7Validator(json.loads((SCHEMAS / "compose-spec.json").read_text()))


def the_plan(mode: str) -> Plan:
    return plan(parse_config(CONFIG), TABLES, mode=mode, project="sample", image="sample:1.0")  # type: ignore[arg-type]


def documents(files: dict[str, str]) -> list[dict[str, Any]]:
    return [
        d
        for name, text in sorted(files.items())
        if name != "nats-values.yaml"
        for d in yaml.safe_load_all(text)
    ]


def validate_k8s(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, KEDA)
    else:
        kubernetes_validate.validate(doc, K8S, strict=True)


@pytest.mark.parametrize("mode", MODES)
def test_k8s_objects_pass_the_kubernetes_and_keda_schemas(mode: str) -> None:
    files = render("k8s", the_plan(mode))
    docs = documents(files)
    for doc in docs:
        validate_k8s(doc)
    kinds = [d["kind"] for d in docs]
    groups = the_plan(mode).groups
    assert kinds.count("Deployment") == len(groups)
    assert kinds.count("Job") == 1 and kinds.count("Secret") == 1
    autoscaled = [g for g in groups if not g.group.replicas.fixed]
    assert kinds.count("ScaledObject") == len(autoscaled)


def test_k8s_deployment_carries_the_group() -> None:
    files = render("k8s", the_plan("micro"))
    front = yaml.safe_load(files["group-front.yaml"])
    container = front["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["host", "--steps", "hello.greet", "--steps", "hello.normalize"]
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "nano-nats"
    assert container["readinessProbe"]["exec"]["command"][:3] == ["nano", "deploy", "probe"]
    assert "open_files=1024" in files["group-front.yaml"]  # said, since k8s has no such field
    rest = yaml.safe_load(files["group-rest.yaml"])
    assert rest["spec"]["replicas"] == 2
    slow, _ = yaml.safe_load_all(files["group-slow.yaml"])
    assert "replicas" not in slow["spec"]  # KEDA's to set: re-applying must not reset it


def test_scaled_object_watches_each_consumer_of_its_group() -> None:
    files = render("k8s", the_plan("micro"))
    _, scaled = yaml.safe_load_all(files["group-slow.yaml"])
    triggers = scaled["spec"]["triggers"]
    logs = [s for t in TABLES for s in t.steps.values() if s.node == "log"]
    assert {t["metadata"]["consumer"] for t in triggers} == {s.consumer for s in logs}
    assert {t["metadata"]["stream"] for t in triggers} == {HELLO.stream.name, TWO.stream.name}
    assert all(t["type"] == "nats-jetstream" for t in triggers)
    assert triggers[0]["metadata"]["lagThreshold"] == "50"
    # KEDA reaches a consumer's leader as <pod>.<host>: the chart's headless service
    endpoint = triggers[0]["metadata"]["natsServerMonitoringEndpoint"]
    assert endpoint.startswith("nats-headless.nats.svc.")
    values = yaml.safe_load(files["nats-values.yaml"])["config"]
    assert endpoint.endswith(f":{values['monitor']['port']}")
    assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["maxReplicaCount"] == 4


def test_helm_values_cluster_jetstream_file_storage_monitoring() -> None:
    values = yaml.safe_load(render("k8s", the_plan("micro"))["nats-values.yaml"])["config"]
    assert values["cluster"] == {"enabled": True, "replicas": 3}
    assert values["jetstream"]["enabled"] and values["jetstream"]["fileStore"]["enabled"]
    assert values["jetstream"]["merge"] == {"sync_interval": "1s"}
    assert values["monitor"]["enabled"]


def test_the_validators_refuse_a_broken_object() -> None:
    files = render("k8s", the_plan("micro"))
    deployment, scaled = yaml.safe_load_all(files["group-slow.yaml"])
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(broken)
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metdata"] = broken["spec"]["triggers"][0].pop("metadata")
    with pytest.raises(jsonschema.ValidationError):
        validate_k8s(broken)
    compose = yaml.safe_load(render("compose", the_plan("micro"))["compose.yaml"])
    compose["services"]["front"]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        COMPOSE.validate(compose)


@pytest.mark.parametrize("mode", MODES)
def test_compose_file_passes_the_compose_schema(mode: str) -> None:
    files = render("compose", the_plan(mode))
    compose = yaml.safe_load(files["compose.yaml"])
    COMPOSE.validate(compose)
    groups = the_plan(mode).groups
    assert set(compose["services"]) == {"nats", "provision", *(g.slug for g in groups)}
    assert "nats-data:/data" in compose["services"]["nats"]["volumes"]
    assert "jetstream {" in files["nats.conf"]


def test_compose_replicas_and_limits() -> None:
    services = yaml.safe_load(render("compose", the_plan("micro"))["compose.yaml"])["services"]
    assert services["slow"]["deploy"]["replicas"] == 4  # no autoscaler: the max
    assert services["rest"]["deploy"]["replicas"] == 2
    assert services["front"]["ulimits"] == {"nofile": 1024, "as": 4 * 1024**3, "cpu": 600}


def _verify(files: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    units = []
    for name in files:
        if name.endswith("@.service"):
            units.append(name.replace("@.service", "@1.service"))
        elif name.endswith((".service", ".target")):
            units.append(name)
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(f"./{u}" for u in units)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd
@pytest.mark.parametrize("mode", MODES)
def test_systemd_units_pass_systemd_analyze_verify(mode: str, tmp_path: Path) -> None:
    layout = SystemdLayout(
        nano=str(Path(sys.executable).parent / "nano"),
        workdir=str(tmp_path),
        env_file=str(tmp_path / "nats.env"),
        user="root",
    )
    files = render_systemd(the_plan(mode), layout)
    result = _verify(files, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    units = [n for n in files if n.endswith("@.service")]
    assert len(units) == len(the_plan(mode).groups)


@needs_systemd
def test_systemd_verify_refuses_a_broken_unit(tmp_path: Path) -> None:
    layout = SystemdLayout(nano="/nonexistent/nano", workdir=str(tmp_path), user="root")
    result = _verify(render_systemd(the_plan("micro"), layout), tmp_path)
    assert result.returncode != 0


def test_systemd_limits_and_replica_instances() -> None:
    files = render_systemd(the_plan("micro"))
    assert "NATS_URL=nats://127.0.0.1:4222\n" in files["nats.env"]
    with_url = plan(parse_config(CONFIG + "nats: {url: 'nats://n1:4222,nats://n2:4222'}\n"), TABLES)
    assert "NATS_URL=nats://n1:4222,nats://n2:4222\n" in render_systemd(with_url)["nats.env"]
    front = files["sample-front@.service"]
    assert "MemoryMax=268435456" in front and "LimitNOFILE=1024" in front
    assert "LimitCPU=600" in front and "Restart=always" in front
    wants = files["sample.target"]
    assert "sample-rest@2.service" in wants and "sample-rest@3.service" not in wants
    assert "sample-slow@4.service" in wants


def test_names_are_dns_labels_and_unique() -> None:
    assert slug("hello.b_2") == "hello-b-2"
    assert slug("hello.b-2", {"hello-b-2"}) != "hello-b-2"
    names = [g.slug for g in the_plan("nano").groups]
    assert len(set(names)) == len(names)
    assert "two-b-2" in names
