"""An in-process KV bucket with revisions, for the memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nanoservice.types import KeyExistsError, KeyNotFoundError

__all__ = ["MemoryKV"]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    value: bytes | None
    revision: int | None


class MemoryKV:
    """The part of a JetStream KV bucket the engine uses, with revisions for CAS."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, tuple[bytes, int]] = {}
        self._revision = 0
        self._watchers: list[asyncio.Queue[_Entry]] = []

    async def get(self, key: str) -> _Entry:
        if key not in self._entries:
            raise KeyNotFoundError(key)
        value, revision = self._entries[key]
        return _Entry(key, value, revision)

    async def put(self, key: str, value: bytes) -> int:
        return self.put_now(key, value)

    def put_now(self, key: str, value: bytes) -> int:
        """:meth:`put` for synchronous callers."""
        self._revision += 1
        self._entries[key] = (value, self._revision)
        self._notify(_Entry(key, value, self._revision))
        return self._revision

    async def create(self, key: str, value: bytes) -> int:
        if key in self._entries:
            raise KeyExistsError(key)
        return self.put_now(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if key not in self._entries or self._entries[key][1] != last:
            raise KeyExistsError(key)
        return self.put_now(key, value)

    async def delete(self, key: str) -> None:
        if self._entries.pop(key, None) is not None:
            self._revision += 1
            self._notify(_Entry(key, None, self._revision))

    def _notify(self, entry: _Entry) -> None:
        for queue in self._watchers:
            queue.put_nowait(entry)

    async def watch(self) -> AsyncIterator[_Entry | None]:
        queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            for key, (value, revision) in list(self._entries.items()):
                yield _Entry(key, value, revision)
            yield None
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)
