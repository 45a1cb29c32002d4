"""Each template's own tests pass, as it stands and once copied under a new name.

The templates are real projects: their tests run in a subprocess from the template's own
folder, with its own pytest settings, as a user runs them after `nano new`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanoservice.cli.new import NODE_PY, PROJECT, Template, copy_template, templates_root

TEMPLATES = templates_root()
PYTHON_TEMPLATES = {"project": (PROJECT, "shop"), "node-py": (NODE_PY, "fraud_score")}


def run_tests(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NATS_URL"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize("name", sorted(PYTHON_TEMPLATES))
def test_the_template_as_it_stands_passes_its_tests(name: str) -> None:
    result = run_tests(TEMPLATES / name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(PYTHON_TEMPLATES))
def test_a_generated_copy_passes_its_tests(name: str, tmp_path: Path) -> None:
    template, new_name = PYTHON_TEMPLATES[name]
    copy_template(template, new_name, tmp_path / "out")
    leftover = [
        p for p in (tmp_path / "out").rglob("*") if p.is_file() and _placeholder(template, p)
    ]
    assert not leftover, f"placeholder {template.placeholder!r} left in {leftover}"
    result = run_tests(tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout, result.stdout


def _placeholder(template: Template, path: Path) -> bool:
    return template.placeholder in str(path) or template.placeholder in path.read_text()


def test_the_typescript_template_passes_its_tests() -> None:
    from tests.e2e.test_typescript import NODE_TS, build_node_ts

    build_node_ts()
    result = subprocess.run(
        ["node", "--test", "dist/test/"], cwd=NODE_TS, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass " in result.stdout, result.stdout


def test_a_generated_typescript_package_builds_and_passes_its_tests(tmp_path: Path) -> None:
    from nanoservice.cli.new import NODE_TS
    from tests.e2e.test_typescript import NODE_TS as TEMPLATE
    from tests.e2e.test_typescript import build_node_ts

    build_node_ts()  # installs the template's packages; the copy borrows them
    copy_template(NODE_TS, "fraud_score", tmp_path / "ts")
    (tmp_path / "ts" / "node_modules").symlink_to(TEMPLATE / "node_modules")
    for command in (["npx", "tsc", "-p", "."], ["node", "--test", "dist/test/"]):
        done = subprocess.run(
            command, cwd=tmp_path / "ts", capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout, done.stdout
