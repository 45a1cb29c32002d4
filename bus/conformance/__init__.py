"""The conformance runner: fixed scenarios run against any node host on a real server.

``nano conformance --cmd "..."`` (docs/protocol.md, "Conformance").
"""

from __future__ import annotations

__all__: list[str] = []
