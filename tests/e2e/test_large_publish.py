"""`nano publish` with a trigger over the server's max payload: it travels as a claim check."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.processes import Background
from tests.e2e.test_cli import describe, nano, project, up  # noqa: F401 (fixtures)


def test_publish_a_5mb_trigger_and_wait_for_its_5mb_result(
    project: Path,  # noqa: F811
    up: Background,  # noqa: F811
) -> None:
    name = "A" * 5_000_000
    (project / "big.json").write_text(json.dumps({"name": name}))
    result = nano("publish", "hello", "@big.json", "--wait", "--timeout", "60", cwd=project)
    assert result.returncode == 0, describe(result)[:2000]
    assert json.loads(result.stdout) == {"message": f"Hello, {name}!", "length": 5_000_000}
