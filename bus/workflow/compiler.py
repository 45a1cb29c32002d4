"""From workflow spec to routing table, with every problem reported at once.

Compiling touches no server: a workflow validates, compiles and draws offline. Each problem
names file, line and step, and where it can, the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import ValidationError

from nanoservice import subjects
from nanoservice.errors import Problem, UnknownNodeError, WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow import dataflow
from nanoservice.workflow.expr import Expression, ExpressionError, step_references
from nanoservice.workflow.foreign import check_foreign_step
from nanoservice.workflow.loader import Document, Location, load_document, parse_document
from nanoservice.workflow.spec import StepSpec, WorkflowSpec
from nanoservice.workflow.table import RoutingTable
from nanoservice.workflow.tabulate import INPUT, build_table
from nanoservice.workflow.triggers import trigger_problems

__all__ = ["compile_file", "compile_spec", "compile_text", "load_spec"]

_INPUT_REF = re.compile(r"\binput\b")


def load_spec(doc: Document) -> WorkflowSpec:
    """Validate a parsed document into a :class:`WorkflowSpec`."""
    if not isinstance(doc.data, dict):
        raise WorkflowError([doc.problem("a workflow must be a mapping with `name` and `steps`")])
    try:
        return WorkflowSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise WorkflowError([_problem_of(doc, err, ()) for err in exc.errors()]) from None


def compile_file(path: str | Path, registry: Registry) -> RoutingTable:
    return compile_spec(load_document(path), registry)


def compile_text(text: str, registry: Registry, *, file: str = "<workflow>") -> RoutingTable:
    return compile_spec(parse_document(text, file=file), registry)


def compile_spec(doc: Document, registry: Registry) -> RoutingTable:
    """Compile a parsed workflow document; raises :class:`WorkflowError` listing all problems."""
    spec = load_spec(doc)
    return _Compiler(spec, doc, registry).run()


class _Compiler:
    def __init__(self, spec: WorkflowSpec, doc: Document, registry: Registry) -> None:
        self.spec, self.doc, self.registry = spec, doc, registry
        self.problems: list[Problem] = []

    def fail(
        self, message: str, loc: Location, step: str | None = None, hint: str | None = None
    ) -> None:
        self.problems.append(self.doc.problem(message, loc, step=step, hint=hint))

    def run(self) -> RoutingTable:
        spec = self.spec
        if not subjects.is_valid_token(spec.name):
            self.fail(f"workflow name '{spec.name}' must match {subjects.TOKEN.pattern}", ("name",))
        start = list(spec.start) if spec.start else [next(iter(spec.steps))]
        for i, name in enumerate(start):
            self._check_target(name, ("start", i) if spec.start else ("steps",), None)
        refs: dict[str, frozenset[str] | None] = {}
        for name, step in spec.steps.items():
            refs[name] = self._check_step(name, step)
        output_refs: frozenset[str] | None = frozenset()
        if spec.output is not None:
            output_refs = self._expression(spec.output, ("output",), None)
            if output_refs is not None and _INPUT_REF.search(spec.output):
                output_refs = output_refs | {INPUT}
        self._check_input_schema()
        self._check_triggers()
        successors = {n: dataflow.successors(s) for n, s in spec.steps.items()}
        self._check_joins()
        self._check_upstream(refs, successors)
        self._check_graph(start, successors)
        if self.problems:
            raise WorkflowError(self.problems)
        flows = {
            n: successors[n] + ([s.loop.back_to] if s.loop and s.loop.back_to else [])
            for n, s in spec.steps.items()
        }  # loop-backs carry data too
        keep = dataflow.keep_sets(flows, refs, output_refs)
        return build_table(self.spec, self.doc.file, start, keep)

    def _check_step(self, name: str, step: StepSpec) -> frozenset[str] | None:
        loc: Location = ("steps", name)
        if not subjects.is_valid_token(name) or name.startswith("_"):
            self.fail(f"step name '{name}' must match {subjects.TOKEN.pattern}", loc, name)
        self._check_node(name, step, loc)
        for field in ("next", "on_error", "default"):
            for i, target in enumerate(getattr(step, field)):
                self._check_target(target, (*loc, field, i), name)
        for route_name, route in step.routes.items():
            for i, target in enumerate(route.to):
                self._check_target(target, (*loc, "routes", route_name, "to", i), name)
        if any(r.when for r in step.routes.values()) and any(
            not r.when for r in step.routes.values()
        ):
            self.fail(
                "mix of routes with and without `when`",
                (*loc, "routes"),
                name,
                hint="give every route a condition, or none (the node chooses)",
            )
        sources: list[tuple[str, Location]] = []
        if step.input is not None:
            sources.append((step.input, (*loc, "input")))
        sources += [(r.when, (*loc, "routes", n, "when")) for n, r in step.routes.items() if r.when]
        sources += [(e, (*loc, "set_vars", v)) for v, e in step.set_vars.items()]
        if step.loop is not None:
            sources.append((step.loop.until, (*loc, "loop", "until")))
            self._check_loop(name, step, loc)
        if step.for_each is not None:
            sources.append((step.for_each.items, (*loc, "for_each", "items")))
        if step.join is not None:
            for i, target in enumerate(step.join.on_timeout):
                self._check_target(target, (*loc, "join", "on_timeout", i), name)
        found: set[str] | None = set()
        for source, where in sources:
            found = dataflow.union(found, self._expression(source, where, name))
        # Node configs may hold expressions of their own: keep what any string mentions.
        texts = [source for source, _ in sources] + list(dataflow.strings(step.with_))
        for text in dataflow.strings(step.with_):
            found = dataflow.union(found, step_references(text))
        if any(_INPUT_REF.search(text) for text in texts):
            found = dataflow.union(found, [INPUT])
        return None if found is None else frozenset(found)

    def _check_node(self, name: str, step: StepSpec, loc: Location) -> None:
        if step.call is not None:
            if step.node is not None:
                self.fail("a `call` step has no `node`", loc, name)
            if not subjects.is_valid_token(step.call.workflow):
                self.fail(
                    f"workflow name '{step.call.workflow}' is not valid",
                    (*loc, "call", "workflow"),
                    name,
                )
            return
        if step.node is None:
            self.fail("a step needs a `node` (or a `call`)", loc, name)
            return
        if step.runtime is not None:
            check_foreign_step(self, name, step, loc)
            return
        try:
            node_type = self.registry.get(step.node)
        except UnknownNodeError as exc:
            self.fail(str(exc), (*loc, "node"), name)
            return
        try:
            node_type.configure(step.with_)
        except ValidationError as exc:
            for err in exc.errors():
                self.problems.append(
                    _problem_of(
                        self.doc,
                        err,
                        (*loc, "with"),
                        name,
                        prefix=f"config of node '{step.node}': ",
                    )
                )
        except Exception as exc:  # a node's own validator failing some other way
            self.fail(
                f"config of node '{step.node}': {type(exc).__name__}: {exc}", (*loc, "with"), name
            )

    def _check_loop(self, name: str, step: StepSpec, loc: Location) -> None:
        assert step.loop is not None
        back_to = step.loop.back_to
        if back_to is None or back_to == name:
            return
        if back_to not in self.spec.steps:
            self._check_target(back_to, (*loc, "loop", "back_to"), name)
            return
        successors = {n: dataflow.successors(s) for n, s in self.spec.steps.items()}
        if name not in dataflow.reachable([back_to], successors):
            self.fail(
                f"loop back_to '{back_to}' does not lead to this step",
                (*loc, "loop", "back_to"),
                name,
            )

    def _check_upstream(
        self, refs: dict[str, frozenset[str] | None], successors: dict[str, list[str]]
    ) -> None:
        """A step can only read the output of a step that may run before it."""
        for name, used in refs.items():
            for ref in sorted(used or ()):
                if ref == name or ref not in successors:
                    continue
                if name not in dataflow.reachable(successors.get(ref, []), successors):
                    self.fail(
                        f"reads steps.{ref}, but '{ref}' never runs before this step",
                        ("steps", name),
                        name,
                    )

    def _check_joins(self) -> None:
        for name, step in self.spec.steps.items():
            if step.join is None:
                continue
            for i, branch in enumerate(step.join.steps):
                if branch not in self.spec.steps:
                    self._check_target(branch, ("steps", name, "join", "steps", i), name)
                elif name not in dataflow.successors(self.spec.steps[branch]):
                    self.fail(
                        f"join can never complete: step '{branch}' never routes here",
                        ("steps", name, "join", "steps", i),
                        name,
                        hint=f"add '{name}' to the `next` or a route of '{branch}'",
                    )

    def _expression(self, source: str, loc: Location, step: str | None) -> frozenset[str] | None:
        try:
            expr = Expression(source)
        except ExpressionError as exc:
            self.fail(str(exc), loc, step)
            return frozenset()
        for ref in sorted(expr.step_refs or ()):
            if ref not in self.spec.steps:
                self.fail(
                    f"expression refers to undefined step '{ref}'",
                    loc,
                    step,
                    hint=f"steps are: {', '.join(self.spec.steps)}",
                )
        return expr.step_refs

    def _check_target(self, target: str, loc: Location, step: str | None) -> None:
        if target not in self.spec.steps:
            from difflib import get_close_matches

            close = get_close_matches(target, list(self.spec.steps), n=1)
            self.fail(
                f"unknown step '{target}'",
                loc,
                step,
                hint=f"did you mean '{close[0]}'?" if close else None,
            )

    def _check_input_schema(self) -> None:
        if self.spec.input is None:
            return
        try:
            jsonschema.Draft202012Validator.check_schema(self.spec.input)
        except jsonschema.SchemaError as exc:
            self.fail(
                f"input is not a valid JSON Schema: {exc.message}", ("input", *exc.absolute_path)
            )

    def _check_triggers(self) -> None:
        for i, subject in enumerate(self.spec.trigger.subjects):
            if subject.startswith(subjects.PREFIX + ".") or not subject or " " in subject:
                self.fail(
                    f"trigger subject '{subject}' is not allowed",
                    ("trigger", "subjects", i),
                    hint="use your own namespace; nano.* is the engine's",
                )
        for message, loc, hint in trigger_problems(self.spec.trigger):
            self.fail(message, ("trigger", *loc), hint=hint)

    def _check_graph(self, start: list[str], successors: dict[str, list[str]]) -> None:
        reachable = dataflow.reachable(start, successors)
        for name in self.spec.steps:
            if name not in reachable:
                self.fail(
                    "step is unreachable from the start",
                    ("steps", name),
                    name,
                    hint="route to it from another step, or list it in `start`",
                )
        cycle = dataflow.find_cycle(successors)
        if cycle:
            self.fail(
                "cycle without a bound: " + " -> ".join(cycle),
                ("steps", cycle[0]),
                cycle[0],
                hint="loops need a `loop:` with `max`",
            )


def _problem_of(
    doc: Document, err: Any, base: Location, step: str | None = None, prefix: str = ""
) -> Problem:
    loc = (*base, *err.get("loc", ()))
    if step is None and len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], str):
        step = loc[1]
    field = ".".join(str(p) for p in loc) or "workflow"
    message = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        message = "unknown field"
    elif err.get("type") == "missing":
        message = "field required"
    return doc.problem(f"{prefix}{field}: {message}", loc, step=step)
