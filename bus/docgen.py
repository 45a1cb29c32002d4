"""Generated documentation: the workflow reference and JSON Schema, from the spec models.

``python -m nanoservice.docgen`` rewrites the generated part of docs/workflows.md and
docs/workflow.schema.json; a test fails when either is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from .spec import RetrySpec, StepSpec, StreamSpec, TriggerSpec, WorkflowSpec

__all__ = ["BEGIN", "END", "reference_markdown", "render_workflows_doc", "workflow_schema"]

BEGIN = "<!-- BEGIN GENERATED: python -m nanoservice.docgen -->"
END = "<!-- END GENERATED -->"
MODELS: list[tuple[str, type[BaseModel]]] = [
    ("Workflow (top level)", WorkflowSpec),
    ("Step (`steps.<name>`)", StepSpec),
    ("Retry (`steps.<name>.retry`)", RetrySpec),
    ("Trigger (`trigger`)", TriggerSpec),
    ("Stream (`stream`)", StreamSpec),
]


def workflow_schema() -> dict[str, Any]:
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nanoservice workflow"
    return schema


def _type_of(info: Any) -> str:
    return _friendly(info.annotation, info.metadata)


def _friendly(tp: Any, metadata: Any = ()) -> str:
    shorthands = {"_as_list": "step name(s)", "_as_route": "step name(s) or route",
                  "_as_join": "step names or join"}
    for m in metadata or ():
        name = getattr(getattr(m, "func", None), "__name__", "")
        if name in shorthands:
            return shorthands[name]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _friendly(args[0], tp.__metadata__)
    if origin in (Union, UnionType):
        parts = [_friendly(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_friendly(args[0])}"
    if origin is dict:
        value = _friendly(args[1])
        return "mapping" if value == "any" else f"mapping of {value}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__.removesuffix("Spec").lower()
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default_of(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return f"`{json.dumps(value)}`" if not isinstance(value, BaseModel) else "see below"
    return f"`{json.dumps(info.default)}`"


def reference_markdown() -> str:
    parts: list[str] = []
    for title, model in MODELS:
        parts += [
            f"### {title}",
            "",
            (model.__doc__ or "").strip(),
            "",
            "| field | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for name, info in model.model_fields.items():
            key = info.alias or name
            desc = (info.description or "").replace("|", "\\|")
            parts.append(f"| `{key}` | {_type_of(info)} | {_default_of(info)} | {desc} |")
        parts.append("")
    return "\n".join(parts)


def render_workflows_doc(current: str) -> str:
    """``current`` with the text between the markers replaced by the reference."""
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{reference_markdown()}\n{END}{tail}"


def main(docs: Path = Path("docs")) -> int:
    page = docs / "workflows.md"
    page.write_text(render_workflows_doc(page.read_text()))
    (docs / "workflow.schema.json").write_text(json.dumps(workflow_schema(), indent=2) + "\n")
    print(f"wrote {page} and {docs / 'workflow.schema.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
