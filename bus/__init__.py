"""nanoservice: event-streaming dataflow on NATS JetStream.

The public API: write nodes (:class:`Node`, :func:`node`, :class:`Context`), compile
workflows (:func:`compile_file`), run them (:class:`Host`), start executions (:class:`Client`).
"""

from __future__ import annotations

from nanoservice.errors import NanoError, NodeError, NonRetryableError, Problem, WorkflowError
from nanoservice.runtime.client import Client, ExecutionFailed, Outcome
from nanoservice.runtime.host import Host, select_steps
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
