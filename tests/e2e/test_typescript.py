"""A workflow mixing Python and TypeScript steps, under `nano up`, with real processes."""

from __future__ import annotations

import json
import queue
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
MIXED = """name: mixed
steps:
  shape: {node: transform, with: {expr: '{"text": input.text}'}, next: count}
  count: {node: mynode, runtime: node, with: {lower: true}, next: record}
  record: {node: log}
"""


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

    def __init__(self, main: Path, steps: str, url: str, cwd: Path) -> None:
        env = {**nano_env(), "NATS_URL": url, "NANO_STEPS": steps}
        self.args = ["node", str(main)]
        self.proc = subprocess.Popen(
            ["node", str(main)],
            cwd=cwd,
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
    (tmp_path / "workflows" / "mixed.yaml").write_text(MIXED)
    yield tmp_path


def test_python_and_typescript_steps_run_one_workflow_under_nano_up(
    main_js: Path, project: Path
) -> None:
    up = Background(["up", "--port", "0"], cwd=project)
    ts: NodeProcess | None = None
    try:
        ready = up.wait_for_line("ready:")
        assert "2 step consumers" in ready, up.output()  # the TS step is not Python's
        url = (project / ".nano" / "url").read_text().strip()
        ts = NodeProcess(main_js, "mixed.count", url, project)
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
