"""The dependency rules of DESIGN.md ("what must never import what"), checked on the source.

An AST walk over every module under ``bus/`` (``nanoservice``) and ``nodes/``
(``nanoservice.nodes``) collects every import statement, wherever it is: at module level,
inside a function, or under ``if TYPE_CHECKING:``. Type-only imports count like any other:
the rules say what a layer may *know about*, and a node whose signature names a NATS type
knows about NATS. (What a module actually *loads* is checked separately, in subprocesses.)

Every violation is reported at once, one line each: ``module imports X: rule (file:line)``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = {"nanoservice": REPO / "bus", "nanoservice.nodes": REPO / "nodes"}


@dataclass(frozen=True)
class Rule:
    """A layer contract: modules matching ``applies`` never import what matches ``forbid``;
    with ``only``, their project imports (``nanoservice...``) must match one of ``only``.

    A pattern ``a.b.*`` matches ``a.b`` and everything under it; a plain name only itself.
    """

    text: str
    applies: tuple[str, ...]
    forbid: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None


ENGINE_CORE = (
    "nanoservice.runtime.*",
    "nanoservice.nats.*",
    "nanoservice.workflow.*",
    "nanoservice.deploy.*",
    "nanoservice.sdk.*",
    "nanoservice.testing.*",
    "nanoservice.types",
    "nanoservice.subjects",
    "nanoservice.errors",
)

RULES = (
    Rule(
        "the types module at the bottom imports nothing of the project",
        applies=("nanoservice.types",),
        forbid=("nanoservice.*",),
    ),
    Rule(
        "specs, compiler and node SDK work offline: no NATS, no runtime, no CLI",
        applies=("nanoservice.workflow.*", "nanoservice.sdk.*"),
        forbid=(
            "nats.*",
            "nanoservice.nats.*",
            "nanoservice.runtime.*",
            "nanoservice.testing.*",
            "nanoservice.cli.*",
        ),
    ),
    Rule(
        "a node sees only the public API: nanoservice, its sdk, errors and types; never NATS",
        applies=("nanoservice.nodes.*",),
        forbid=("nats.*",),
        only=(
            "nanoservice",
            "nanoservice.sdk.*",
            "nanoservice.errors",
            "nanoservice.types",
            "nanoservice.nodes.*",
        ),
    ),
    Rule(
        "the engine core imports no CLI, no trigger and no particular node",
        applies=ENGINE_CORE,
        forbid=("nanoservice.cli.*", "nanoservice.triggers.*", "nanoservice.nodes.*"),
    ),
    Rule(
        "the runtime talks to NATS only through the Transport and KeyValueStore seams",
        applies=("nanoservice.runtime.*",),
        forbid=("nats.*", "nanoservice.nats.*"),
    ),
    Rule(
        "the engine core never depends on the debugging tools (inspect reads what it left)",
        applies=ENGINE_CORE,
        forbid=("nanoservice.inspect.*",),
    ),
    Rule(
        "inspect returns plain data for the CLI and the console: no CLI, no engine internals",
        applies=("nanoservice.inspect.*",),
        forbid=("nanoservice.cli.*", "nanoservice.runtime.*", "nanoservice.testing.*"),
    ),
    Rule(
        "the deployment model works offline, like workflows: no NATS, no runtime, no CLI",
        applies=("nanoservice.deploy.*",),
        forbid=(
            "nats.*",
            "nanoservice.nats.*",
            "nanoservice.runtime.*",
            "nanoservice.testing.*",
            "nanoservice.cli.*",
        ),
    ),
    Rule(
        "observability is middleware on any backend: no NATS, no CLI, no particular node",
        applies=("nanoservice.observe.*",),
        forbid=("nats.*", "nanoservice.nats.*", "nanoservice.cli.*", "nanoservice.nodes.*"),
    ),
)

# Known violations, (module, imported module). Each entry must still be needed: the test
# fails on a stale one, so remove it with the import it excused.
ALLOWED = {
    # project_registry imports the built-in nodes package only to find its folder (so a
    # project's ./nodes that *is* that folder is not loaded twice): no node is imported.
    ("nanoservice.workflow.project", "nanoservice.nodes"),
}


@dataclass(frozen=True)
class Import:
    module: str
    imported: str
    where: str


def _matches(name: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return name == base or name.startswith(base + ".")
    return name == pattern


def modules(sources: Mapping[str, Path]) -> dict[str, tuple[Path, str]]:
    """Dotted module name -> (file, its path as shown), for every ``.py`` under each folder."""
    found: dict[str, tuple[Path, str]] = {}
    for package, root in sources.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = (path, str(path.relative_to(root.parent)))
    return found


def imports(module: str, path: Path, shown: str, known: Mapping[str, object]) -> Iterator[Import]:
    """Every module ``module`` imports; ``from pkg import sub`` counts as ``pkg.sub``."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, f"{shown}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(module, sub if sub in known else base, f"{shown}:{node.lineno}")


def violations(sources: Mapping[str, Path], rules: tuple[Rule, ...] = RULES) -> list[str]:
    """One line per (import, broken rule), sorted: ``module imports X: rule (file:line)``."""
    known = modules(sources)
    found: list[tuple[str, str, str]] = []
    for module, (path, shown) in known.items():
        for imp in imports(module, path, shown, known):
            for rule in rules:
                if not any(_matches(module, p) for p in rule.applies):
                    continue
                broken = any(_matches(imp.imported, p) for p in rule.forbid)
                if rule.only is not None and _matches(imp.imported, "nanoservice.*"):
                    broken = broken or not any(_matches(imp.imported, p) for p in rule.only)
                if broken:
                    found.append((module, imp.imported, f"{rule.text} ({imp.where})"))
    return sorted(f"{m} imports {i}: {text}" for m, i, text in set(found))


def test_dependency_rules_hold() -> None:
    lines = violations(SOURCES)
    unexpected = [
        line for line in lines if tuple(line.split(":", 1)[0].split(" imports ")) not in ALLOWED
    ]
    assert not unexpected, "dependency rules broken:\n" + "\n".join(unexpected)


def test_allow_list_has_no_stale_entry() -> None:
    used = {tuple(line.split(":", 1)[0].split(" imports ")) for line in violations(SOURCES)}
    stale = sorted(f"{m} imports {i}" for m, i in ALLOWED - used)
    assert not stale, "no longer needed, remove from ALLOWED:\n" + "\n".join(stale)


def test_checker_reports_every_planted_violation(tmp_path: Path) -> None:
    bus, nodes = tmp_path / "bus", tmp_path / "nodes"
    files = {
        bus / "__init__.py": "",
        bus / "types.py": "import nanoservice.errors\n",
        bus / "errors.py": "import json\n",
        bus / "subjects.py": "",
        bus / "workflow" / "__init__.py": "",
        bus / "workflow" / "compiler.py": (
            "from typing import TYPE_CHECKING\n"
            "from .. import errors\n"
            "from ..runtime import host\n"
            "if TYPE_CHECKING:\n"
            "    from nats.js import JetStreamContext\n"
        ),
        bus / "runtime" / "__init__.py": "",
        bus / "runtime" / "host.py": "def f():\n    from nanoservice.cli import app\n",
        nodes / "__init__.py": "",
        nodes / "good.py": "from nanoservice import Context\nfrom nanoservice.sdk import node\n",
        nodes / "bad.py": "from nanoservice import subjects\nimport nats\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    lines = violations({"nanoservice": bus, "nanoservice.nodes": nodes})

    assert [line.split(" (", 1)[0] for line in lines] == [
        "nanoservice.nodes.bad imports nanoservice.subjects: " + RULES[2].text,
        "nanoservice.nodes.bad imports nats: " + RULES[2].text,
        "nanoservice.runtime.host imports nanoservice.cli: " + RULES[3].text,
        "nanoservice.types imports nanoservice.errors: " + RULES[0].text,
        "nanoservice.workflow.compiler imports nanoservice.runtime.host: " + RULES[1].text,
        "nanoservice.workflow.compiler imports nats.js: " + RULES[1].text,
    ]
    assert lines[-1].endswith("(bus/workflow/compiler.py:5)")


def _loaded_after(statement: str) -> set[str]:
    """Top-level packages and ``nanoservice`` modules loaded by ``statement``, in a fresh
    interpreter (this one has the test fixtures' imports)."""
    probe = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(out.split())


def test_compiling_loads_no_nats() -> None:
    loaded = _loaded_after("import nanoservice.workflow.compiler, nanoservice.workflow.project")
    assert "nanoservice.workflow.compiler" in loaded  # the probe ran
    assert not {m for m in loaded if _matches(m, "nats.*")}
    assert not {m for m in loaded if _matches(m, "nanoservice.runtime.*")}


def test_cel_loads_without_its_command_line_tool() -> None:
    loaded = _loaded_after("import nanoservice.workflow.expr")
    assert "cel" in loaded
    assert "cel.cli" not in loaded
    assert "prompt_toolkit" not in loaded
    # and the placeholder is gone: the real command-line tool still imports afterwards
    assert "cel.cli" in _loaded_after(
        "import nanoservice.workflow.expr, cel.cli; cel.cli.cli_entry"
    )


def test_the_cli_loads_no_engine_until_a_command_runs() -> None:
    loaded = _loaded_after("import nanoservice.cli")
    assert "nanoservice.cli.up" in loaded
    heavy = {"nats", "cel", "pydantic", "jsonschema", "httpx", "asyncio"}
    assert not heavy & {m.split(".")[0] for m in loaded}
    assert not {m for m in loaded if _matches(m, "nanoservice.runtime.*")}
    assert not {m for m in loaded if _matches(m, "nanoservice.workflow.*")}
