"""``nano console`` as a user runs it: a real process, its printed address, its errors."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.workflow.project import compile_files, project_registry
from tests.e2e.processes import NANO, Background, nano_env

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "console.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(ServerOptions(store_dir=tmp_path_factory.mktemp("nats"))) as started:
        (table,) = compile_files([REPO / "workflows" / "hello.yaml"], project_registry([]))

        async def provision() -> None:
            async with nats_backend(started.url) as backend:
                await backend.provision(table)

        asyncio.run(provision())
        yield started


def nano(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NANO), *args],
        cwd=cwd,
        env=nano_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_console_prints_its_address_serves_it_and_stops_on_ctrl_c(
    server: LocalServer, tmp_path: Path
) -> None:
    proc = Background(["console", "--nats-url", server.url, "--port", "0"], tmp_path)
    try:
        line = proc.wait_for_line("console ")
        match = re.fullmatch(r"console +(http://127\.0\.0\.1:\d+/ui/)\n", line)
        assert match, line
        page = httpx.get(match[1], timeout=10)
        assert page.status_code == 200 and "hello" in page.text
        assert httpx.get(match[1] + "workflows/hello", timeout=10).status_code == 200
        proc.proc.send_signal(signal.SIGINT)
        assert proc.wait() == 0, proc.output()
    finally:
        proc.close()


def test_console_with_a_token_on_all_addresses(server: LocalServer, tmp_path: Path) -> None:
    proc = Background(
        ["console", "-s", server.url, "--host", "0.0.0.0", "--port", "0", "--token", "t0k"],
        tmp_path,
    )
    try:
        line = proc.wait_for_line("console ")
        match = re.fullmatch(r"console +http://0\.0\.0\.0:(\d+)/ui/\?token=t0k\n", line)
        assert match, line
        url = f"http://127.0.0.1:{match[1]}/ui/"
        assert httpx.get(url, timeout=10).status_code == 401
        with httpx.Client(timeout=10) as client:
            opened = client.get(url + "?token=t0k", follow_redirects=True)
            assert opened.status_code == 200 and "hello" in opened.text
    finally:
        proc.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--host", "0.0.0.0"], 2, "error: --token is required to listen on 0.0.0.0"),
        (["--port", "70000"], 2, "error: invalid --port 70000: use 0-65535"),
        (["--nats-url", "nats://127.0.0.1:1", "--port", "0"], 1, "error: cannot reach NATS"),
        (["--host", "no.such.host.invalid", "--token", "x"], 1, "error: cannot listen on"),
    ],
)
def test_bad_options_and_no_nats_are_one_line_errors(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = nano("console", *args, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_port_is_a_one_line_error(server: LocalServer, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = nano("console", "-s", server.url, "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_the_documented_command_prints_what_the_doc_shows(
    server: LocalServer, tmp_path: Path
) -> None:
    """docs/console.md's console block: the command, then the lines it prints."""
    block = re.search(r"```console\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/console.md has no console block"
    command, *shown = block[1].strip().splitlines()
    assert command == "$ nano console"
    proc = Background(["console", "-s", server.url, "--port", "0"], tmp_path)
    try:
        for expected in shown:
            label = expected.split()[0]
            got = proc.wait_for_line(label + " ")
            pattern = re.escape(expected).replace("8090", r"\d+")
            pattern = pattern.replace(re.escape("nats://127.0.0.1:4222"), r"nats://\S+")
            assert re.fullmatch(pattern, got.strip()), (expected, got)
    finally:
        proc.close()
