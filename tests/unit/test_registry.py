"""Where nodes come from (built-in, installed, local); a name clash is refused unless opted in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nanoservice.errors import NanoError
from nanoservice.nodes.transform import transform
from nanoservice.sdk.registry import Registry
from tests.e2e.processes import nano_env


def write(folder: Path, name: str, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return path


SHADOW = """
    from typing import Any
    from nanoservice import Context, node

    @node("transform"{extra})
    async def mine(ctx: Context, input: Any) -> Any:
        return "mine"
"""


def test_local_node_named_like_a_builtin_is_refused_naming_both(tmp_path: Path) -> None:
    path = write(tmp_path / "nodes", "shadow.py", SHADOW.format(extra=""))
    with pytest.raises(NanoError) as info:
        Registry.discover([tmp_path / "nodes"])
    message = str(info.value)
    assert "node 'transform'" in message
    assert f"the local node in {path}" in message
    assert "the built-in node (nanoservice.nodes.transform:transform)" in message
    assert "override=True" in message and "\n" not in message


def test_local_node_with_override_replaces_the_builtin(tmp_path: Path) -> None:
    path = write(tmp_path / "nodes", "shadow.py", SHADOW.format(extra=", override=True"))
    registry = Registry.discover([tmp_path / "nodes"])
    assert registry.get("transform") is not transform
    assert registry.origin("transform") == f"the local node in {path}"
    assert registry.get("log") is not None


def test_class_node_override_flag(tmp_path: Path) -> None:
    code = """
        from nanoservice import Context, Node, NoConfig

        class Log(Node[dict, dict, NoConfig]):
            name = "log"
            override = {flag}

            async def handle(self, ctx: Context, input: dict) -> dict:
                return input
    """
    write(tmp_path / "a", "log.py", code.format(flag="False"))
    with pytest.raises(NanoError, match="clashes with the built-in node"):
        Registry.discover([tmp_path / "a"])
    write(tmp_path / "b", "log.py", code.format(flag="True"))
    assert Registry.discover([tmp_path / "b"]).get("log").override


def test_two_local_folders_defining_one_name_clash(tmp_path: Path) -> None:
    code = """
        from typing import Any
        from nanoservice import Context, node

        @node("twin")
        async def twin(ctx: Context, input: Any) -> Any:
            return input
    """
    first = write(tmp_path / "a", "twin.py", code)
    second = write(tmp_path / "b", "twin2.py", code)
    with pytest.raises(NanoError) as info:
        Registry.discover([tmp_path / "a", tmp_path / "b"])
    assert f"the local node in {second} clashes with the local node in {first}" in str(info.value)


def test_local_module_importing_a_builtin_is_no_clash(tmp_path: Path) -> None:
    write(
        tmp_path / "nodes",
        "reuse.py",
        """
        from nanoservice.nodes.transform import transform
        """,
    )
    assert Registry.discover([tmp_path / "nodes"]).get("transform") is transform


def test_cli_shows_the_clash_in_one_line(tmp_path: Path) -> None:
    """`nano validate` in a project whose nodes/ shadows a built-in: one line, no traceback."""
    write(tmp_path / "nodes", "shadow.py", SHADOW.format(extra=""))
    (tmp_path / "w.yaml").write_text("name: w\nsteps:\n  a: {node: log}\n")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "nano"), "validate", "w.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=nano_env(),
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "clashes" in line]
    assert len(lines) == 1 and "shadow.py" in lines[0] and "built-in" in lines[0]
