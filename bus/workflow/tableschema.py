"""The routing table's JSON Schema, generated from :mod:`.table` (docs/routing-table.schema.json).

Run ``python -m nanoservice.workflow.tableschema`` after changing the table; a test checks
the checked-in file is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from nanoservice.workflow.table import FORMAT, RoutingTable

__all__ = ["SCHEMA_FILE", "routing_table_schema"]

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "routing-table.schema.json"


def routing_table_schema() -> dict[str, Any]:
    """The schema of a stored routing table (KV bucket ``nano_tables``), format ``FORMAT``."""
    schema: dict[str, Any] = msgspec.json.schema(RoutingTable)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"nanoservice routing table, format {FORMAT}",
        "description": "Generated from nanoservice.workflow.table; see docs/protocol.md.",
        **schema,
    }


def render() -> str:
    return json.dumps(routing_table_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render())
    print(f"wrote {SCHEMA_FILE.name}")
