"""``nano --version`` and ``-h``, run as the real command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nanoservice
from tests.e2e.processes import NANO, nano_env

REPO = Path(__file__).resolve().parents[2]


def nano(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NANO), *args],
        cwd=cwd,
        env=nano_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_version_prints_the_package_version() -> None:
    for flag in ("--version", "-V"):
        result = nano(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"nano (nanoservice-py) {nanoservice.__version__}\n"
        assert result.stderr == ""


def test_h_is_an_alias_of_help() -> None:
    long, short = nano("--help"), nano("-h")
    assert long.returncode == short.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    assert "validate" in short.stdout and "--version" in short.stdout


def test_h_works_on_a_command() -> None:
    result = nano("validate", "-h")
    assert result.returncode == 0, result.stderr
    assert "Usage: nano validate" in result.stdout
