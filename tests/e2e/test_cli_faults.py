"""The ``nano`` CLI under faults and bad input: real servers, real processes, bounded waits."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanoservice.nats.local_server import LocalServer, ServerOptions
from tests.e2e.processes import Background
from tests.e2e.test_cli import HELLO, describe, flat, nano


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder with the sample workflow."""
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    return tmp_path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    """A nats-server of the test's own (so the test may kill it)."""
    local = LocalServer(ServerOptions(store_dir=tmp_path / "server"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


# --- 1. a host whose connection is gone for good exits non-zero ----------------------------


def test_host_exits_1_when_reconnects_are_exhausted(folder: Path, server: LocalServer) -> None:
    host = Background(
        ["host", "workflows", "--nats-url", server.url, "--reconnect-attempts", "2"], cwd=folder
    )
    try:
        host.wait_for_line("ready:")
        server.kill()
        code = host.wait()
        assert code == 1, host.output()
        err = flat("".join(host.stderr))
        assert "connection to NATS closed for good" in err, host.output()
        assert "Traceback" not in err, host.output()
    finally:
        host.close()
