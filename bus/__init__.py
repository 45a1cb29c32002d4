"""nanoservice: event-streaming dataflow on NATS JetStream.

The public API: write nodes (:class:`Node`, :func:`node`, :class:`Context`), compile
workflows (:func:`compile_file`), run them (:func:`serve` on a backend, with
:class:`Middleware` around every node), start executions (:class:`Client`).

Names are resolved on first access (PEP 562), so ``import nanoservice`` costs almost
nothing and compiling a workflow never loads the NATS client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanoservice.errors import NanoError, NodeError, NonRetryableError, Problem, WorkflowError
    from nanoservice.nats.client import Client
    from nanoservice.runtime.host import Host, select_steps
    from nanoservice.runtime.middleware import Invocation, Middleware
    from nanoservice.runtime.outcome import ExecutionFailed, Outcome
    from nanoservice.runtime.serve import serve
    from nanoservice.sdk.node import Context, NoConfig, Node, NodeType, Routed, node
    from nanoservice.sdk.registry import Registry
    from nanoservice.workflow.compiler import compile_file, compile_text
    from nanoservice.workflow.expr import CelExpression, Expression, ExpressionError
    from nanoservice.workflow.table import RoutingTable

__all__ = [
    "CelExpression",
    "Client",
    "Context",
    "ExecutionFailed",
    "Expression",
    "ExpressionError",
    "Host",
    "Invocation",
    "Middleware",
    "NanoError",
    "NoConfig",
    "Node",
    "NodeError",
    "NodeType",
    "NonRetryableError",
    "Outcome",
    "Problem",
    "Registry",
    "Routed",
    "RoutingTable",
    "WorkflowError",
    "__version__",
    "compile_file",
    "compile_text",
    "node",
    "select_steps",
    "serve",
]

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["NanoError", "NodeError", "NonRetryableError", "Problem", "WorkflowError"],
        "nanoservice.errors",
    ),
    "Client": "nanoservice.nats.client",
    **dict.fromkeys(["ExecutionFailed", "Outcome"], "nanoservice.runtime.outcome"),
    **dict.fromkeys(["Host", "select_steps"], "nanoservice.runtime.host"),
    **dict.fromkeys(["Invocation", "Middleware"], "nanoservice.runtime.middleware"),
    "serve": "nanoservice.runtime.serve",
    **dict.fromkeys(
        ["Context", "NoConfig", "Node", "NodeType", "Routed", "node"], "nanoservice.sdk.node"
    ),
    "Registry": "nanoservice.sdk.registry",
    **dict.fromkeys(["compile_file", "compile_text"], "nanoservice.workflow.compiler"),
    **dict.fromkeys(
        ["CelExpression", "Expression", "ExpressionError"], "nanoservice.workflow.expr"
    ),
    "RoutingTable": "nanoservice.workflow.table",
}
"""Where each public name lives: imported from there on first use."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # Not a public name: ``from nanoservice import subjects`` then imports the submodule.
        raise AttributeError(f"module 'nanoservice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
