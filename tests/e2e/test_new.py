"""`nano new` as a newcomer runs it: real processes, a generated project under `nano up`."""

from __future__ import annotations

import json
import re
import shlex
import signal
from pathlib import Path

from tests.e2e.processes import Background
from tests.e2e.test_cli import REPO, describe, nano

CONSOLE = re.compile(r"```console\n(.*?)```", re.S)


def quickstart() -> tuple[str, list[str], str]:
    """The README quickstart's two console blocks: the start, the publish and its output."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Five-minute quickstart") :]
    start, publish = CONSOLE.findall(section)[:2]
    command, *output = publish.splitlines()
    return start.strip(), shlex.split(command.removeprefix("$ ")), "\n".join(output)


def test_the_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    start, publish, printed = quickstart()
    assert start == "$ nano new project demo && cd demo && nano up", start
    created = nano("new", "project", "demo", cwd=tmp_path)
    assert created.returncode == 0, describe(created)
    demo = tmp_path / "demo"
    up = Background(["up", "--port", "0"], cwd=demo)
    try:
        up.wait_for_line("ready:")
        assert publish[0] == "nano", publish
        result = nano(*publish[1:], cwd=demo)
        assert result.returncode == 0, describe(result) + up.output()
        assert json.loads(result.stdout) == json.loads(printed)
        hello = nano("publish", "hello", '{"name": "Ada"}', "--wait", cwd=demo)
        assert json.loads(hello.stdout) == {"message": "Hello, Ada!", "length": 3}, describe(hello)
        up.proc.send_signal(signal.SIGINT)
        assert up.wait() == 0, up.output()
    finally:
        up.close()


def test_new_refuses_a_folder_that_is_not_empty_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine\n")
    result = nano("new", "project", "demo", cwd=tmp_path)
    assert result.returncode == 1, describe(result)
    assert result.stderr.strip() == "error: demo is not empty; choose a new or empty folder"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["notes.txt"]


def test_new_workflow_refuses_to_overwrite_and_bad_names_are_one_line(tmp_path: Path) -> None:
    first = nano("new", "workflow", "orders", cwd=tmp_path)
    assert first.returncode == 0, describe(first)
    valid = nano("validate", "workflows/orders.yaml", cwd=tmp_path)
    assert valid.returncode == 0, describe(valid)
    again = nano("new", "workflow", "orders", cwd=tmp_path)
    assert again.returncode == 1, describe(again)
    assert again.stderr.strip().startswith("error: workflows/orders.yaml exists already")
    bad = nano("new", "node", "Fraud-Score", cwd=tmp_path)
    assert bad.returncode == 1, describe(bad)
    assert bad.stderr.strip() == (
        "error: invalid name 'Fraud-Score': use a lower-case Python identifier"
    )
    assert "Traceback" not in bad.stderr + again.stderr
