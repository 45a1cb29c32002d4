"""Listing the routing tables: a server too busy to answer is an error, never "no tables"
(which made `nano publish` and `nano cancel` say a provisioned workflow did not exist)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from nanoservice.errors import NanoError
from nanoservice.nats.provision import KEYS_ATTEMPTS, load_tables


class JetStream:
    """Answers stream info with ``failure`` every time."""

    def __init__(self, failure: BaseException) -> None:
        self.failure, self.calls = failure, 0

    async def key_value(self, name: str) -> Any:
        return SimpleNamespace()

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> Any:
        self.calls += 1
        raise self.failure


async def test_a_listing_that_times_out_is_retried_then_one_line() -> None:
    js = JetStream(TimeoutError())
    with pytest.raises(NanoError, match=r"did not list the routing tables \(nano_tables\)"):
        await load_tables(js)  # type: ignore[arg-type]
    assert js.calls == KEYS_ATTEMPTS
