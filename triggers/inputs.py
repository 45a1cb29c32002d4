"""From an HTTP request to a workflow's input, and the input checked against its schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec

__all__ = ["BadInput", "Invalid", "build_input", "header_field", "schema_problems"]


class BadInput(Exception):
    """A request that cannot become an input (400): ``str(exc)`` says why."""


@dataclass(frozen=True)
class Invalid:
    """One way the input does not match the schema: where (a JSON path) and what."""

    field: str
    problem: str


def header_field(header: str) -> str:
    """The input field of a copied header: ``X-Tenant`` -> ``x_tenant``."""
    return header.lower().replace("-", "_")


def build_input(
    body: bytes,
    params: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
) -> Any:
    """The body (JSON; empty: ``{}``) with the query, the selected headers and the path
    parameters added as fields, each overriding the one before."""
    try:
        payload: Any = msgspec.json.decode(body) if body.strip() else {}
    except msgspec.DecodeError as exc:
        raise BadInput(f"malformed JSON body: {exc}") from None
    extra: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
    extra.update(headers)
    extra.update(params)
    if not extra:
        return payload
    if not isinstance(payload, dict):
        raise BadInput(
            "the body must be a JSON object: the path, query or headers add fields "
            f"({', '.join(sorted(extra))})"
        )
    return {**payload, **extra}


def schema_problems(validator: jsonschema.Draft202012Validator, value: Any) -> list[Invalid]:
    """Every mismatch, most relevant first; ``field`` is ``/``-joined (``""``: the input)."""
    errors = sorted(validator.iter_errors(value), key=jsonschema.exceptions.relevance)
    found = []
    for error in errors:
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.validator_value, list):
            missing = [
                name
                for name in error.validator_value
                if isinstance(error.instance, dict) and name not in error.instance
            ]
            for name in missing:
                found.append(Invalid("/".join([*path, name]), "is required"))
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            for name in error.instance:
                if name not in allowed:
                    found.append(Invalid("/".join([*path, name]), "is not allowed"))
            continue
        found.append(Invalid("/".join(path), error.message))
    return found
