"""The public API is what ``__all__`` lists, and every name there exists."""

from __future__ import annotations

import nanoservice


def test_all_is_pinned() -> None:
    assert sorted(nanoservice.__all__) == [
        "CelExpression", "Client", "Context", "ExecutionFailed", "Expression",
        "ExpressionError", "Host", "NanoError", "NoConfig", "Node", "NodeError", "NodeType",
        "NonRetryableError", "Outcome", "Problem", "Registry", "Routed", "RoutingTable",
        "WorkflowError", "__version__", "compile_file", "compile_text", "node", "select_steps",
    ]  # fmt: skip
    for name in nanoservice.__all__:
        assert hasattr(nanoservice, name), name


def test_nodes_never_import_the_transport() -> None:
    import ast
    from pathlib import Path

    import nanoservice.nodes as builtin

    for path in Path(builtin.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for stmt in ast.walk(tree):
            if isinstance(stmt, ast.ImportFrom | ast.Import):
                names = (
                    [stmt.module or ""]
                    if isinstance(stmt, ast.ImportFrom)
                    else [a.name for a in stmt.names]
                )
                for name in names:
                    assert not name.startswith("nats"), f"{path.name} imports {name}"
                    assert "transport" not in name, f"{path.name} imports {name}"


def test_spec_and_compiler_never_touch_nats() -> None:
    import ast
    from pathlib import Path

    bus = Path(nanoservice.__file__).parent
    offline = [
        "types",
        "subjects",
        "errors",
        "workflow/expr",
        "workflow/loader",
        "workflow/spec",
        "workflow/table",
        "workflow/compiler",
        "workflow/tabulate",
        "workflow/dataflow",
        "workflow/graph",
        "sdk/node",
        "sdk/registry",
        "runtime/envelope",
        "workflow/project",
    ]
    for module in offline:
        tree = ast.parse((bus / f"{module}.py").read_text())
        for stmt in ast.walk(tree):
            if isinstance(stmt, ast.ImportFrom) and stmt.module:
                assert not stmt.module.startswith("nats"), f"{module} imports {stmt.module}"
                assert not stmt.module.startswith(("nanoservice.nats", "nanoservice.cli")), module
                assert stmt.module != "nanoservice.runtime.host", module
            if isinstance(stmt, ast.Import):
                assert all(not a.name.startswith("nats") for a in stmt.names), module
