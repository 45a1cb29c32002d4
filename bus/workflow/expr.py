"""The expression language: CEL, compiled once, evaluated against an execution's data.

An expression sees these variables: ``input`` (the trigger payload), ``prev`` (the output of
the step that sent the message), ``steps`` (``steps.<name>.output`` of earlier steps),
``vars`` (workflow variables) and ``execution`` (``id``, ``workflow``). CEL has no ``eval``,
no I/O and always terminates, so workflow authors cannot run arbitrary code.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema


def _import_cel() -> None:
    """Import ``cel`` without its command-line tool.

    The package's ``__init__`` imports ``cel.cli`` (typer, prompt_toolkit, pygments): about
    0.2 s of every ``nano`` start for a REPL we never use. A placeholder stands in for
    ``cel.cli`` during the import and is removed afterwards, so a later ``import cel.cli``
    still gets the real module; if a future ``cel`` needs more from it, import it plainly.
    """
    if "cel" in sys.modules or "cel.cli" in sys.modules:
        return
    placeholder = types.ModuleType("cel.cli")
    sys.modules["cel.cli"] = placeholder
    try:
        import cel  # noqa: F401
    except ImportError:
        sys.modules.pop("cel", None)
    finally:
        if sys.modules.get("cel.cli") is placeholder:
            del sys.modules["cel.cli"]


_import_cel()

import cel  # noqa: E402
from cel import stdlib  # noqa: E402

__all__ = [
    "SCOPE_NAMES",
    "CelExpression",
    "Expression",
    "ExpressionError",
    "compile_expression",
]

SCOPE_NAMES = frozenset({"input", "prev", "steps", "vars", "execution", "output", "item", "index"})
"""Every variable an expression may name (``output``/``item``/``index`` only where documented)."""

_BUILTINS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bytes", "has", "all", "exists", "exists_one", "map", "filter", "timestamp",
        "duration", "type", "dyn", "getFullYear", "getMonth", "getDayOfMonth", "getDayOfWeek",
        "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip


def _stdlib_context() -> cel.Context:
    context = cel.Context()
    stdlib.add_stdlib_to_context(context)
    return context


_UNSET: dict[str, Any] = dict.fromkeys(SCOPE_NAMES)
_STDLIB_NAMES = frozenset(_stdlib_context().functions)
_STEP_REF = re.compile(r"\bsteps\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_-]*)|\[)")


class ExpressionError(ValueError):
    """An expression that does not compile or that failed while evaluating."""


class Expression:
    """A compiled CEL expression; ``evaluate`` runs it against a scope mapping."""

    __slots__ = ("_context", "_program", "source", "step_refs", "variables")

    def __init__(self, source: str, *, allowed: frozenset[str] = SCOPE_NAMES) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except ValueError as exc:
            raise ExpressionError(_first_line(str(exc), source)) from None
        self.variables: frozenset[str] = frozenset(self._program.variables())
        unknown_vars = _top_level_unknown(self._program, allowed)
        if unknown_vars:
            raise ExpressionError(
                f"unknown variable {', '.join(sorted(unknown_vars))} in '{source}' "
                f"(an expression can use {', '.join(sorted(allowed))})"
            )
        functions = {f for f in self._program.functions() if f[0] not in "_@"}
        unknown = functions - _BUILTINS - _STDLIB_NAMES
        if unknown:
            raise ExpressionError(f"unknown function {', '.join(sorted(unknown))} in '{source}'")
        self._context = _stdlib_context() if functions & _STDLIB_NAMES else None
        self.step_refs = step_references(source)

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """Run the expression; raises :class:`ExpressionError` saying which and why."""
        try:
            if self._context is None:
                return self._program.execute(dict(scope))
            # One shared context per expression (building one costs more than evaluating);
            # every scope name is reset so nothing leaks from the previous evaluation.
            self._context.update({**_UNSET, **scope})
            return self._program.execute(self._context)
        except KeyError as exc:
            raise ExpressionError(f"'{self.source}': no such key {exc}") from None
        except Exception as exc:
            raise ExpressionError(f"'{self.source}': {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str, *, allowed: frozenset[str] = SCOPE_NAMES) -> Expression:
    return Expression(source, allowed=allowed)


def step_references(source: str) -> frozenset[str] | None:
    """Names of the steps whose outputs an expression reads; None if it indexes ``steps[...]``."""
    names: set[str] = set()
    for match in _STEP_REF.finditer(source):
        if match.group(1) is None:
            return None
        names.add(match.group(1))
    return frozenset(names)


def _top_level_unknown(program: cel.Program, allowed: frozenset[str]) -> set[str]:
    # Comprehension macros bind names (the x in list.map(x, ...)); those are not unknown.
    bound = set(
        re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*(\w+)", program.source)
    )
    return {v for v in program.variables() if v not in allowed and v not in bound}


def _first_line(message: str, source: str) -> str:
    detail = message.split("ERROR: ", 1)[-1].split("\n", 1)[0]
    return f"cannot compile '{source}': {detail}"


def _validate(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if not isinstance(value, str):
        raise ValueError("an expression must be a string of CEL")
    return Expression(value)


CelExpression = Annotated[
    Expression,
    PlainValidator(_validate),
    PlainSerializer(lambda e: e.source, return_type=str),
    WithJsonSchema({"type": "string", "format": "cel", "description": "A CEL expression."}),
]
"""A node config field holding an expression: compiled when the workflow compiles."""
