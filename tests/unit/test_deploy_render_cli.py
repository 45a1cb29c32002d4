"""``nano deploy render`` as a user runs it (a real process): files written, bad input in one
line with where it is."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.e2e.processes import NANO, nano_env

ROOT = Path(__file__).resolve().parents[2]


def nano(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NANO), *args], cwd=cwd, env=nano_env(), capture_output=True, text=True, timeout=60
    )


def test_render_writes_the_files_and_refuses_bad_input(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    shutil.copy(ROOT / "workflows" / "hello.yaml", tmp_path / "workflows")
    (tmp_path / "nano.yaml").write_text(
        "mode: micro\ngroups:\n  front:\n    steps: [hello.normalize]\n  rest:\n    steps: ['*']\n"
    )
    ok = nano(
        "deploy", "render", "--target", "k8s", "--out", "out", "--project", "shop", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "k8s: 2 groups (mode micro), 5 files in out"
    assert ok.stderr.startswith("warning: no --image: the manifests run nano-project:latest")
    front = yaml.safe_load((tmp_path / "out" / "group-front.yaml").read_text())
    assert front["metadata"]["name"] == "shop-front"

    nano_mode = nano(
        "deploy", "render", "-t", "systemd", "--mode", "nano", "-o", "sd", cwd=tmp_path
    )
    assert nano_mode.returncode == 0, nano_mode.stderr
    assert nano_mode.stdout.splitlines()[0] == "systemd: 3 groups (mode nano), 6 files in sd"
    assert any(p.name.endswith("-hello-greet@.service") for p in (tmp_path / "sd").iterdir())

    bad_target = nano("deploy", "render", "--target", "k9s", "--out", "out", cwd=tmp_path)
    assert bad_target.returncode == 1
    assert (
        bad_target.stderr
        == "error: --target: unknown target 'k9s' (one of: k8s, compose, systemd)\n"
    )

    (tmp_path / "nano.yaml").write_text("mode: micro\ngroups:\n  front:\n    steps: [hello.gret]\n")
    bad_config = nano("deploy", "render", "--target", "compose", "--out", "out", cwd=tmp_path)
    assert bad_config.returncode == 2
    first = bad_config.stderr.splitlines()[0]
    assert first.startswith("error: nano.yaml:4: group 'front': no step or workflow 'hello.gret'")
    assert "Traceback" not in bad_config.stderr
