"""nanoservice: event-streaming dataflow on NATS JetStream.

The public API: write nodes (:class:`Node`, :func:`node`, :class:`Context`), compile
workflows (:func:`compile_file`), run them (:class:`Host`), start executions (:class:`Client`).
"""

from __future__ import annotations

from .client import Client, ExecutionFailed, Outcome
from .compiler import compile_file, compile_text
from .errors import NanoError, NodeError, NonRetryableError, Problem, WorkflowError
from .expr import CelExpression, Expression, ExpressionError
from .host import Host, select_steps
from .node import Context, NoConfig, Node, NodeType, Routed, node
from .registry import Registry
from .table import RoutingTable

__all__ = [
    "CelExpression",
    "Client",
    "Context",
    "ExecutionFailed",
    "Expression",
    "ExpressionError",
    "Host",
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
]

__version__ = "0.1.0"
