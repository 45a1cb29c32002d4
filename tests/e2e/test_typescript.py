"""A workflow mixing Python and TypeScript steps, under `nano up`, with real processes."""

from __future__ import annotations

import functools
import json
import queue
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Background, nano_env
from tests.e2e.test_cli import REPO, describe, nano

NODE_TS = REPO / "templates" / "node-ts"


def documented() -> tuple[str, list[str]]:
    """docs/authoring.md's mixed workflow and the command it starts the TypeScript node with."""
    page = (REPO / "docs" / "authoring.md").read_text()
    section = page[page.index("## Nodes in other languages") :]
    workflow = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    console = section.split("```console\n", 1)[1].split("```", 1)[0]
    line = next(x for x in console.splitlines() if " node " in x)
    command = shlex.split(line.removeprefix("$ ").split("#")[0])
    assert command[0].startswith("NATS_URL=") and command[1] == "node", command
    return workflow, command[2:]


@functools.cache
def build_node_ts() -> Path:
    """`npm ci` (once, from the lock file) and `tsc` in templates/node-ts; its entry point."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the TypeScript node cannot run here")
    steps = (
        [["npm", "ci", "--no-audit", "--no-fund"]]
        if not (NODE_TS / "node_modules").is_dir()
        else []
    )
    for command in [*steps, ["npx", "tsc", "-p", "."]]:
        done = subprocess.run(command, cwd=NODE_TS, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
    return NODE_TS / "dist" / "src" / "main.js"


class NodeProcess(Background):
    """The TypeScript host as a real process (same line reader as `nano`)."""

    def __init__(self, args: list[str], url: str) -> None:
        env = {**nano_env(), "NATS_URL": url}
        self.args = ["node", *args]
        self.proc = subprocess.Popen(
            self.args,
            cwd=NODE_TS,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()


@pytest.fixture(scope="module")
def main_js() -> Path:
    return build_node_ts()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "mixed.yaml").write_text(documented()[0])
    yield tmp_path


def test_the_documented_mixed_workflow_runs_under_nano_up_with_the_typescript_node(
    main_js: Path, project: Path
) -> None:
    up = Background(["up", "--port", "0"], cwd=project)
    ts: NodeProcess | None = None
    try:
        ready = up.wait_for_line("ready:")
        assert "2 step consumers" in ready, up.output()  # the TS step is not Python's
        url = (project / ".nano" / "url").read_text().strip()
        ts = NodeProcess(documented()[1], url)
        ts.wait_for_line("ready:")
        result = nano("publish", "mixed", '{"text": "A b a"}', "--wait", cwd=project)
        assert result.returncode == 0, describe(result) + up.output() + ts.output()
        assert json.loads(result.stdout) == {"words": 3, "top": "a"}
        bad = nano("publish", "mixed", '{"text": 5}', "--wait", cwd=project)
        assert bad.returncode != 0, describe(bad)
        assert "NonRetryableError" in bad.stdout + bad.stderr, describe(bad) + ts.output()
        ts.proc.send_signal(signal.SIGTERM)
        assert ts.wait() == 0, ts.output()
    finally:
        if ts is not None:
            ts.close()
        up.close()
