"""Listing the routing tables: a server too busy to answer is an error, never "no tables"
(which made `nano publish` say a provisioned workflow did not exist)."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.errors import NoKeysError

from nanoservice.errors import NanoError
from nanoservice.nats.provision import KEYS_ATTEMPTS, load_tables


class Bucket:
    def __init__(self, failure: BaseException) -> None:
        self.failure, self.calls = failure, 0

    async def keys(self) -> list[str]:
        self.calls += 1
        raise self.failure


class JetStream:
    def __init__(self, kv: Bucket) -> None:
        self.kv = kv

    async def key_value(self, name: str) -> Any:
        return self.kv


async def test_an_empty_bucket_is_no_tables() -> None:
    assert await load_tables(JetStream(Bucket(NoKeysError()))) == {}  # type: ignore[arg-type]


async def test_a_listing_that_times_out_is_retried_then_one_line() -> None:
    kv = Bucket(TimeoutError())
    with pytest.raises(NanoError, match=r"did not list the routing tables \(nano_tables\)"):
        await load_tables(JetStream(kv))  # type: ignore[arg-type]
    assert kv.calls == KEYS_ATTEMPTS
