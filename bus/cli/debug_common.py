"""What the debugging commands share: a session (connection + stored tables), finding an
execution's workflow, JSON output and times in words."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nanoservice.cli.common import TOKEN_RULE, die
from nanoservice.errors import NanoError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from nanoservice.workflow.table import RoutingTable

__all__ = [
    "Json",
    "Session",
    "check_token",
    "clock",
    "print_json",
    "session",
    "short",
    "workflow_of",
]

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclass
class Session:
    nc: NATS
    tables: dict[str, RoutingTable]

    def table(self, workflow: str) -> RoutingTable:
        if workflow not in self.tables:
            known = ", ".join(sorted(self.tables)) or "none"
            raise NanoError(f"no workflow '{workflow}' on this server (workflows: {known})")
        return self.tables[workflow]


@contextlib.asynccontextmanager
async def session(url: str, name: str) -> AsyncIterator[Session]:
    """Connected (no reconnects: a command says what is wrong instead) with the tables."""
    from nanoservice.nats.connect import connect
    from nanoservice.nats.provision import load_tables

    try:
        nc = await connect(url, name=name, reconnect=False)
    except Exception as exc:
        raise NanoError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        yield Session(nc, await load_tables(nc.jetstream()))
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def workflow_of(s: Session, execution: str, workflow: str | None) -> str:
    """The given workflow (checked), else the one whose stream holds this execution."""
    from nanoservice.subjects import execution_filter

    if workflow is not None:
        s.table(workflow)
        return workflow
    js = s.nc.jetstream()
    for name, table in sorted(s.tables.items()):
        with contextlib.suppress(Exception):
            info = await js.stream_info(
                table.stream.name, subjects_filter=execution_filter(name, execution)
            )
            if info.state.subjects:
                return name
    if len(s.tables) == 1:
        return next(iter(s.tables))  # let the caller say whether it aged out
    raise NanoError(f"no workflow has an execution {execution!r} (give --workflow)")


def check_token(what: str, name: str | None) -> None:
    from nanoservice.subjects import is_valid_token

    if name is not None and not is_valid_token(name):
        raise die(f"invalid {what} {name!r}: {TOKEN_RULE}")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def clock(stamp: float | None) -> str:
    """A local wall-clock time with milliseconds."""
    if stamp is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"


def short(revision: str | None) -> str:
    return (revision or "-")[:8]
