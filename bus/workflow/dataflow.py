"""The workflow as a graph: who follows whom, what is reachable, and what data must travel.

Pure functions over step names, used by the compiler: successors of a step, reachability,
cycles, and the "keep sets" (which earlier outputs, and whether the trigger payload, the
message leaving each step must carry, because something after it reads them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "Step",
    "find_cycle",
    "keep_sets",
    "merge",
    "reachable",
    "strings",
    "successors",
    "union",
]


class _Route(Protocol):
    @property
    def to(self) -> Sequence[str]: ...


class _Join(Protocol):
    @property
    def on_timeout(self) -> Sequence[str]: ...


class Step(Protocol):
    """What both a step spec and a compiled step route have: where the step can go."""

    @property
    def next(self) -> Sequence[str]: ...

    @property
    def default(self) -> Sequence[str]: ...

    @property
    def on_error(self) -> Sequence[str]: ...

    @property
    def routes(self) -> Mapping[str, _Route]: ...

    @property
    def join(self) -> _Join | None: ...


def successors(step: Step) -> list[str]:
    """Every step this one can send to (routes, default, error routes, join timeout)."""
    out = [*step.next, *step.default, *step.on_error]
    for route in step.routes.values():
        out += route.to
    if step.join is not None:
        out += step.join.on_timeout
    return list(dict.fromkeys(out))


def reachable(start: Iterable[str], successors: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [s for s in start if s in successors]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(t for t in successors[name] if t in successors)
    return seen


def keep_sets(
    successors: dict[str, list[str]],
    refs: dict[str, frozenset[str] | None],
    output_refs: frozenset[str] | None,
) -> dict[str, frozenset[str] | None]:
    """For each step, the data that the message leaving it must carry (None = all).

    ``needed[s]`` is what ``s`` or anything after it reads; loops make the graph cyclic, so
    it is computed as a fixpoint rather than by one recursive walk.
    """
    base = {n: merge(refs.get(n, frozenset()), output_refs) for n in successors}
    needed = dict(base)
    changed = True
    while changed:
        changed = False
        for name, succs in successors.items():
            acc = base[name]
            for succ in succs:
                acc = merge(acc, needed.get(succ, frozenset()))
            if acc != needed[name]:
                needed[name], changed = acc, True
    keep: dict[str, frozenset[str] | None] = {}
    for name, succs in successors.items():
        carried = output_refs
        for succ in succs:
            carried = merge(carried, needed.get(succ, frozenset()))
        keep[name] = carried
    return keep


def merge(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    """Union, where None means "everything"."""
    return None if a is None or b is None else a | b


def union(acc: set[str] | None, more: Iterable[str] | None) -> set[str] | None:
    if acc is None or more is None:
        return None
    acc.update(more)
    return acc


def strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def find_cycle(successors: dict[str, list[str]]) -> list[str] | None:
    """A cycle as ``[a, b, ..., a]``, or None; iterative, so a long chain cannot overflow."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in successors:
        if root in state:
            continue
        path: list[str] = [root]
        todo: list[Iterator[str]] = [iter(successors[root])]
        state[root] = 1
        while todo:
            succ = next(todo[-1], None)
            if succ is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(succ) == 1:
                return [*path[path.index(succ) :], succ]
            elif succ in successors and succ not in state:
                state[succ] = 1
                path.append(succ)
                todo.append(iter(successors[succ]))
    return None
