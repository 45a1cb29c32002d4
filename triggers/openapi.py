"""``/openapi.json``: the bridge's routes described from the workflows' schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nanoservice.triggers.inputs import header_field
from nanoservice.triggers.routes import Target
from nanoservice.workflow.triggers import path_params

__all__ = ["openapi"]

_ERROR = {
    "description": "An error, said in one line",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}


def openapi(targets: Sequence[Target]) -> dict[str, Any]:
    """An OpenAPI 3.1 document of the routes (JSON Schema 2020-12 bodies, as written)."""
    paths: dict[str, dict[str, Any]] = {}
    for target in targets:
        route, table = target.route, target.table
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in path_params(route.path)
        ]
        parameters += [
            {
                "name": header,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": f"copied into the input as `{header_field(header)}`",
            }
            for header in route.headers
        ]
        parameters.append(
            {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
                "description": "becomes the execution id (a repeat returns the same outcome)",
            }
        )
        responses: dict[str, Any] = {
            "400": _ERROR,
            "413": _ERROR,
            "422": _ERROR,
            "503": _ERROR,
        }
        if route.mode == "async":
            responses["202"] = {"description": "Started; see Location /executions/{id}"}
        else:
            result: dict[str, Any] = {"description": "The workflow's result"}
            if route.output_schema is not None:
                result["content"] = {"application/json": {"schema": route.output_schema}}
            responses["200"] = result
            responses["500"] = _ERROR
            responses["504"] = _ERROR
        operation: dict[str, Any] = {
            "operationId": f"{table.workflow}_{route.method.lower()}",
            "summary": f"start workflow {table.workflow} ({route.mode})",
            "parameters": parameters,
            "responses": responses,
        }
        if route.method not in ("GET", "DELETE"):
            operation["requestBody"] = {
                "required": table.input_schema is not None,
                "content": {"application/json": {"schema": table.input_schema or {}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "nanoservice bridge", "version": "1"},
        "paths": paths,
    }
