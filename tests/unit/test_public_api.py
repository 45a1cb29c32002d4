"""The public API is what ``__all__`` lists, every name there exists, and importing the
package loads none of it until a name is used (the layer rules: test_dependencies.py)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nanoservice


def test_all_is_pinned() -> None:
    assert sorted(nanoservice.__all__) == [
        "CelExpression", "Client", "Context", "ExecutionFailed", "Expression",
        "ExpressionError", "Host", "Invocation", "Middleware", "NanoError", "NoConfig", "Node",
        "NodeError", "NodeType", "NonRetryableError", "Outcome", "Problem", "Registry",
        "Routed", "RoutingTable", "WorkflowError", "__version__", "compile_file",
        "compile_text", "node", "select_steps", "serve",
    ]  # fmt: skip
    for name in nanoservice.__all__:
        assert hasattr(nanoservice, name), name


def test_names_resolve_to_their_home_module() -> None:
    for name, module in nanoservice._EXPORTS.items():
        assert getattr(nanoservice, name) is getattr(importlib.import_module(module), name)
    assert set(dir(nanoservice)) >= set(nanoservice.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = nanoservice.nope  # type: ignore[attr-defined]
    from nanoservice import subjects  # a submodule still imports as usual

    assert subjects.__name__ == "nanoservice.subjects"


def test_type_checking_block_matches_the_lazy_table() -> None:
    """What mypy and IDEs see (the ``if TYPE_CHECKING:`` imports) is what runs."""
    tree = ast.parse(Path(nanoservice.__file__).read_text(encoding="utf-8"))
    (block,) = [s for s in tree.body if isinstance(s, ast.If)]
    seen = {
        alias.name: stmt.module
        for stmt in block.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert seen == nanoservice._EXPORTS
    assert set(seen) == set(nanoservice.__all__) - {"__version__"}


def test_import_loads_nothing_until_used() -> None:
    probe = (
        "import sys, nanoservice\n"
        "before = {m for m in sys.modules if m.startswith('nanoservice.')}\n"
        "nanoservice.Problem\n"
        "after = {m for m in sys.modules if m.startswith('nanoservice.')}\n"
        "print(sorted(before), sorted(after), 'nats' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["[]", "['nanoservice.errors']", "False"]
