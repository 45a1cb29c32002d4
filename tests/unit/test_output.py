"""Node outputs must be JSON: what is converted, what is refused, and how the refusal reads."""

from __future__ import annotations

import datetime
import decimal
import enum
import re
from typing import Any

import pytest
from pydantic import BaseModel

from nanoservice.errors import NonRetryableError
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.output import OutputError


@node("free")
async def free(ctx: Context, input: Any) -> Any:
    return input


class Item(BaseModel):
    sku: str
    price: decimal.Decimal
    at: datetime.datetime
    tags: set[str]


class Basket(BaseModel):
    items: list[Item]
    score: float


@node("typed")
async def typed(ctx: Context, input: Any) -> Basket:
    return Basket.model_validate(input)


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


NAIVE = datetime.datetime(2024, 1, 1, 12, 0)
AWARE = datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"items": [1, 2, 3, float("nan")]}, "output.items[3]: NaN is not JSON"),
        ([float("inf")], "output[0]: inf is not JSON"),
        ({"a": {"b": -float("inf")}}, "output.a.b: -inf is not JSON"),
        ({"s": {1, 2}}, "output.s: set is not JSON (return a list)"),
        ({"s": frozenset()}, "output.s: frozenset is not JSON"),
        ({"raw": b"\x00"}, "output.raw: bytes is not JSON (decode or base64-encode it)"),
        ({"at": NAIVE}, "output.at: a datetime without a timezone is not JSON"),
        ({"at": AWARE}, "output.at: datetime is not JSON"),
        ({"d": decimal.Decimal("1.10")}, "output.d: Decimal is not JSON"),
        ({"m": {1: "one"}}, "output.m: key 1 is int, not a string"),
        ({"odd key": [{"x": object()}]}, "output['odd key'][0].x: object is not JSON"),
        (Colour.RED, "output: Colour is not JSON"),
        (float("nan"), "output: NaN is not JSON"),
    ],
)
def test_untyped_output_that_is_not_json_is_refused_with_its_path(value: Any, message: str) -> None:
    with pytest.raises(OutputError, match=re.escape(message)) as info:
        free.dump_output(value)
    assert isinstance(info.value, NonRetryableError)
    assert "\n" not in str(info.value)


def test_json_values_pass_unchanged_and_tuples_become_lists() -> None:
    value = {"a": [1, 2.5, "x", True, None, {"b": []}], "big": 2**70, "size": Size.BIG}
    assert free.dump_output(value) is value
    assert free.dump_output({"t": (1, (2, 3))}) == {"t": [1, [2, 3]]}


def test_models_are_dumped_wherever_they_are() -> None:
    item = Item(sku="a", price=decimal.Decimal("1.10"), at=AWARE, tags={"x"})
    out = free.dump_output({"nested": [item]})
    assert out == {
        "nested": [{"sku": "a", "price": "1.10", "at": "2024-01-01T12:00:00Z", "tags": ["x"]}]
    }


def test_typed_output_uses_the_declared_conversions() -> None:
    basket = {"items": [{"sku": "a", "price": "1.10", "at": NAIVE, "tags": ["x"]}], "score": 1}
    out = typed.dump_output(Basket.model_validate(basket))
    assert out == {
        "items": [{"sku": "a", "price": "1.10", "at": "2024-01-01T12:00:00", "tags": ["x"]}],
        "score": 1.0,
    }


def test_typed_output_still_refuses_nan() -> None:
    basket = Basket(items=[], score=float("nan"))
    with pytest.raises(OutputError, match=re.escape("output.score: NaN is not JSON")):
        typed.dump_output(basket)


def test_typed_output_that_cannot_be_serialised_is_an_output_error() -> None:
    @node("cannot")
    async def cannot(ctx: Context, input: Any) -> list[int]:
        return [1]

    with pytest.raises(OutputError, match=r"^output: "):
        cannot.dump_output([object()])
