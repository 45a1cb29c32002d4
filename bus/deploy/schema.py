"""Generated docs of ``nano.yaml``: its JSON Schema and the reference in docs/deployment.md.

``python -m nanoservice.deploy.schema`` rewrites docs/nano.schema.json and the generated
part of docs/deployment.md; a test fails when either is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nanoservice.deploy.config import (
    DeployConfig,
    DurabilitySpec,
    GroupDefaults,
    GroupSpec,
    NatsSpec,
    ReplicaRange,
    Resources,
)
from nanoservice.workflow.docgen import END, fields_table, replace_generated

__all__ = ["BEGIN", "END", "deploy_schema", "reference_markdown", "render_deployment_doc"]

BEGIN = "<!-- BEGIN GENERATED: python -m nanoservice.deploy.schema -->"
MODELS: list[tuple[str, type[BaseModel]]] = [
    ("nano.yaml (top level)", DeployConfig),
    ("Group (`groups.<name>`)", GroupSpec),
    ("Replicas as a range (`replicas: {min, max}`)", ReplicaRange),
    ("Resources (`resources`)", Resources),
    ("Defaults (`defaults`)", GroupDefaults),
    ("NATS (`nats`)", NatsSpec),
    ("Durability (`durability`)", DurabilitySpec),
]


def deploy_schema() -> dict[str, Any]:
    schema = DeployConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nanoservice nano.yaml"
    return schema


def reference_markdown() -> str:
    parts: list[str] = []
    for title, model in MODELS:
        doc = " ".join((model.__doc__ or "").split())
        parts += [f"### {title}", "", doc, "", *fields_table(model), ""]
    return "\n".join(parts)


def render_deployment_doc(current: str) -> str:
    """``current`` with the text between the markers replaced by the reference."""
    return replace_generated(current, BEGIN, reference_markdown())


def main(docs: Path = Path("docs")) -> int:
    page = docs / "deployment.md"
    page.write_text(render_deployment_doc(page.read_text()))
    (docs / "nano.schema.json").write_text(json.dumps(deploy_schema(), indent=2) + "\n")
    print(f"wrote {page} and {docs / 'nano.schema.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
