"""docs/deployment.md, "From a laptop to a cluster": its examples are what the code does.

The ``nano deploy render`` console example is run (a real process) and its output compared;
the Helm values shown are the rendered ones; every rendered file a shell example names
exists. (The ``nano deploy apply`` example needs a server: tests/integration/test_deploy_apply.py.)
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.e2e.processes import NANO, nano_env

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "deployment.md"
HEADING = "## From a laptop to a cluster"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def section() -> str:
    text = PAGE.read_text()
    assert HEADING in text
    return text[text.index(HEADING) :]


def blocks(kind: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(section()) if m.group(1) == kind]


def console_runs(block: str) -> list[tuple[list[str], str]]:
    """``$ command`` lines with the output shown under each."""
    runs: list[tuple[list[str], str]] = []
    for line in block.splitlines(keepends=True):
        if line.startswith("$ "):
            runs.append((shlex.split(line[2:]), ""))
        else:
            runs[-1] = (runs[-1][0], runs[-1][1] + line)
    return runs


def docs_project(tmp_path: Path) -> Path:
    """The sample project with the page's own nano.yaml."""
    (tmp_path / "workflows").mkdir()
    shutil.copy(ROOT / "workflows" / "hello.yaml", tmp_path / "workflows")
    nano_yaml = next(b for b in blocks_of_page() if b.startswith("# nano.yaml\n"))
    (tmp_path / "nano.yaml").write_text(nano_yaml)
    return tmp_path


def blocks_of_page() -> list[str]:
    return [m.group(2) for m in FENCE.finditer(PAGE.read_text()) if m.group(1) == "yaml"]


def render_example() -> tuple[list[str], str]:
    (run,) = [
        r for b in blocks("console") for r in console_runs(b) if r[0][1:3] == ["deploy", "render"]
    ]
    return run


def test_the_render_example_prints_what_the_docs_show(tmp_path: Path) -> None:
    command, shown = render_example()
    assert command[0] == "nano"
    result = subprocess.run(
        [str(NANO), *command[1:]],
        cwd=docs_project(tmp_path),
        env=nano_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


def test_the_helm_values_shown_are_the_rendered_ones(tmp_path: Path) -> None:
    from nanoservice.deploy import parse_config
    from nanoservice.deploy.render import plan, render
    from nanoservice.sdk.registry import Registry
    from nanoservice.workflow.compiler import compile_file

    (shown,) = [b for b in blocks("yaml") if b.startswith("# nats-values.yaml\n")]
    project = docs_project(tmp_path)
    table = compile_file(project / "workflows" / "hello.yaml", Registry.discover())
    the_plan = plan(parse_config((project / "nano.yaml").read_text()), [table])
    rendered = render("k8s", the_plan)["nats-values.yaml"]
    assert yaml.safe_load(shown) == yaml.safe_load(rendered)


def test_every_rendered_file_the_shell_examples_name_exists() -> None:
    _, shown = render_example()
    listed = {line.strip() for line in shown.splitlines()[1:]}
    named = {m for b in blocks("sh") for m in re.findall(r"deploy/k8s/[\w.-]+", b)}
    assert named and named <= listed, named - listed
    assert "kubectl apply -f deploy/k8s/provision-job.yaml" in "".join(blocks("sh"))
