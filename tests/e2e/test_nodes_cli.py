"""Node packages as a user makes them: `nano new node`, a real pip install, `nano nodes`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Background
from tests.e2e.test_cli import describe, nano

AUTHORING = Path(__file__).resolve().parents[2] / "docs" / "authoring.md"


def documented_clash() -> str:
    """The clash line docs/authoring.md shows (the packages below are the ones it names)."""
    text = AUTHORING.read_text()
    start = text.index("`error: node 'fraud_score' is declared")
    return text[start + 1 : text.index("`", start + 1)]


FLOW = """name: count
steps:
  count:
    node: fraud_score
    with: {lower: true}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real node packages installed into one folder: `nano-node-fraud-score`, and
    `nano-node-scorer` whose node is also called `fraud_score` (a clash)."""
    root = tmp_path_factory.mktemp("packages")
    assert nano("new", "node", "fraud_score", "--dir", "a", cwd=root).returncode == 0
    assert nano("new", "node", "scorer", "--dir", "b", cwd=root).returncode == 0
    for path in [root / "b" / "pyproject.toml", root / "b" / "nano_node_scorer" / "__init__.py"]:
        text = path.read_text()
        text = text.replace('scorer = "', 'fraud_score = "').replace(
            'node("scorer"', 'node("fraud_score"'
        )
        path.write_text(text)
    # Without build isolation when `wheel` is there (the dev extra): no index needed.
    isolation = [] if importlib.util.find_spec("wheel") is None else ["--no-build-isolation"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation]
    install = subprocess.run(
        [*pip, "--target", "site", "./a", "./b"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    return root / "site"


@pytest.fixture
def project(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PYTHONPATH", str(site))
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "count.yaml").write_text(FLOW)
    yield tmp_path


def test_two_distributions_declaring_one_node_are_named_in_one_line(project: Path) -> None:
    for command in (["nodes", "list"], ["validate"]):
        result = nano(*command, cwd=project)
        assert result.returncode == 1, describe(result)
        line = result.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, describe(result)
        assert line == documented_clash(), line


def test_nano_yaml_chooses_and_the_installed_node_runs_under_nano_up(project: Path) -> None:
    (project / "nano.yaml").write_text("prefer:\n  fraud_score: nano-node-fraud-score\n")
    listed = nano("nodes", "list", cwd=project)
    assert listed.returncode == 0, describe(listed)
    row = next(
        line.split() for line in listed.stdout.splitlines() if line.startswith("fraud_score")
    )
    assert row[:5] == ["fraud_score", "nano-node-fraud-score", "0.1.0", "counts", "the"], row
    info = nano("nodes", "info", "fraud_score", "--json", cwd=project)
    assert info.returncode == 0, describe(info)
    data = json.loads(info.stdout)
    assert data["origin"].startswith("the installed node (package nano-node-fraud-score")
    assert set(data["config"]["properties"]) == {"lower"}
    assert data["input"]["required"] == ["text"]
    assert "node: fraud_score" in data["example"]
    up = Background(["up", "--port", "0"], cwd=project)
    try:
        up.wait_for_line("ready:")
        result = nano("publish", "count", '{"text": "A a b"}', "--wait", cwd=project)
        assert result.returncode == 0, describe(result) + up.output()
        assert json.loads(result.stdout) == {"words": 3, "top": "a"}
    finally:
        up.close()


def test_a_preference_for_a_distribution_without_the_node_is_refused(project: Path) -> None:
    (project / "nano.yaml").write_text("prefer:\n  fraud_score: nano-node-other\n")
    result = nano("nodes", "list", cwd=project)
    assert result.returncode == 1, describe(result)
    assert result.stderr.strip() == (
        "error: node 'fraud_score': nano.yaml prefers distribution nano-node-other, which "
        "does not declare it (declared by: nano-node-fraud-score, nano-node-scorer)"
    )


def test_nano_yaml_that_is_not_yaml_is_one_line(project: Path) -> None:
    (project / "nano.yaml").write_text("prefer: [unclosed\n")
    result = nano("nodes", "list", cwd=project)
    assert result.returncode == 1, describe(result)
    assert result.stderr.startswith("error: nano.yaml:2: "), describe(result)
    assert "Traceback" not in result.stderr
