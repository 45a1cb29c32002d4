"""The expression language wrapper: compile-time checks and evaluation errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanoservice.workflow.expr import Expression, ExpressionError, step_references


def test_evaluates_against_the_scope() -> None:
    expr = Expression('{"n": input.name + "!", "big": input.total > 100}')
    assert expr.evaluate({"input": {"name": "Ada", "total": 150.5}}) == {"n": "Ada!", "big": True}


def test_extended_string_functions_are_available() -> None:
    assert Expression("input.s.trim().upperAscii()").evaluate({"input": {"s": " ab "}}) == "AB"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("input.", "cannot compile"),
        ("foo.bar", "unknown variable foo"),
        ("nosuch(1)", "unknown function nosuch"),
    ],
)
def test_compile_errors_say_what(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment):
        Expression(source)


def test_comprehension_variables_are_not_unknown() -> None:
    assert Expression("input.xs.map(x, x * 2)").evaluate({"input": {"xs": [1, 2]}}) == [2, 4]


def test_missing_key_at_run_time() -> None:
    with pytest.raises(ExpressionError, match="no such key"):
        Expression("input.missing").evaluate({"input": {}})


def test_step_references() -> None:
    assert step_references("steps.a.output + steps.b_2.output.x") == {"a", "b_2"}
    assert step_references('steps["a"]') is None
    assert step_references("input.steps") == frozenset()


@given(st.text(max_size=40))
def test_arbitrary_text_compiles_or_fails_cleanly(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        Expression(source)


def test_nothing_leaks_between_evaluations() -> None:
    expr = Expression('has(vars.k) ? vars.k.upperAscii() : "none"')
    assert expr.evaluate({"vars": {"k": "a"}}) == "A"
    assert expr.evaluate({"vars": {}}) == "none"
    with pytest.raises(ExpressionError):  # vars is unset now, not the previous value
        expr.evaluate({"input": "b"})
