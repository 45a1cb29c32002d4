"""Steps served by a host of another runtime (``runtime:``): what such a step may use.

A foreign host (docs/protocol.md, "Foreign hosts") is kept thin: it runs a node and
forwards its output. Expressions, conditions, joins, loops, calls and trigger checks stay
with Python hosts, so a foreign step declares none of them.
"""

from __future__ import annotations

import re
from typing import Protocol

from nanoservice.workflow.loader import Location
from nanoservice.workflow.spec import StepSpec, WorkflowSpec

__all__ = ["FOREIGN_FIELDS", "check_foreign_step"]

FOREIGN_FIELDS = ("node", "with", "next", "retry", "timeout", "ack_wait", "concurrency")
_RUNTIME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
_CONTROL = ("input", "routes", "default", "on_error", "join", "loop", "call", "for_each")


class _Reporter(Protocol):
    spec: WorkflowSpec

    def fail(
        self, message: str, loc: Location, step: str | None = None, hint: str | None = None
    ) -> None: ...


def check_foreign_step(compiler: _Reporter, name: str, step: StepSpec, loc: Location) -> None:
    """Report every field a foreign step may not use (one problem each)."""
    spec = compiler.spec
    hint = f"a `runtime:` step uses only {', '.join(FOREIGN_FIELDS)}"
    assert step.runtime is not None
    if not _RUNTIME.match(step.runtime):
        compiler.fail(
            f"runtime '{step.runtime}' must match {_RUNTIME.pattern}", (*loc, "runtime"), name
        )
    for field in _CONTROL:
        if getattr(step, field):
            compiler.fail(
                f"`{field}` is not served by runtime '{step.runtime}'", (*loc, field), name, hint
            )
    if step.set_vars:
        compiler.fail(
            f"`set_vars` is not served by runtime '{step.runtime}'", (*loc, "set_vars"), name, hint
        )
    start = list(spec.start) if spec.start else [next(iter(spec.steps))]
    if name in start:
        compiler.fail(
            f"a first step cannot be served by runtime '{step.runtime}' (triggers are checked "
            "by Python hosts)",
            (*loc, "runtime"),
            name,
            hint="put a Python step first, e.g. a `transform` that shapes the input",
        )
    if not step.next and spec.output is not None:
        compiler.fail(
            f"the last step cannot be served by runtime '{step.runtime}' when the workflow "
            "has an `output` expression",
            (*loc, "runtime"),
            name,
            hint="add a Python step after it, or drop `output`",
        )
