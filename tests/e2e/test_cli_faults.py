"""The ``nano`` CLI under faults and bad input: real servers, real processes, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.subjects import consumer_name
from tests.e2e.processes import Background
from tests.e2e.test_cli import HELLO, alive, children, describe, flat, nano


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder with the sample workflow."""
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    return tmp_path


@pytest.fixture
def up(folder: Path) -> Iterator[Background]:
    """`nano up --port 0` running in :func:`folder`, ready to consume."""
    proc = Background(["up", "--port", "0"], cwd=folder)
    try:
        proc.wait_for_line("ready:")
        yield proc
    finally:
        proc.close()


def one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """``result`` failed with exit 1 and one line on stderr holding every phrase."""
    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), describe(result)
    for phrase in phrases:
        assert phrase in lines[0], describe(result)


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


# --- 2. one `nano up` per folder; its nats-server dies with it ------------------------------


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigkill_of_up_takes_its_server_along(folder: Path) -> None:
    first = Background(["up", "--port", "0"], cwd=folder)
    try:
        first.wait_for_line("ready:")
        servers = children(first.proc.pid)
        assert servers, first.output()
        first.kill()
        for pid in servers:
            assert _gone(pid), f"nats-server {pid} outlived a SIGKILLed `nano up`"
    finally:
        first.close()
    again = Background(["up", "--port", "0"], cwd=folder)
    try:
        again.wait_for_line("ready:")
    finally:
        again.close()


def test_second_up_in_the_same_folder_is_refused(folder: Path) -> None:
    first = Background(["up", "--port", "0"], cwd=folder)
    try:
        first.wait_for_line("ready:")
        second = nano("up", "--port", "0", cwd=folder)
        assert second.returncode == 1, describe(second)
        err = flat(second.stderr)
        assert f"another `nano up` (pid {first.proc.pid})" in err, describe(second)
        assert "Traceback" not in second.stderr, describe(second)
        assert first.proc.poll() is None, first.output()
    finally:
        first.close()


def test_up_stops_a_server_orphaned_on_its_folder(folder: Path) -> None:
    store = (folder / ".nano" / "nats").resolve()
    orphan = LocalServer(ServerOptions(store_dir=store))
    orphan.start()
    pid = orphan.pid
    assert pid is not None
    try:
        up = Background(["up", "--port", "0"], cwd=folder)
        try:
            up.wait_for_line("ready:")
            assert f"stopped nats-server pid {pid}" in "".join(up.stdout), up.output()
            assert _gone(pid), up.output()
        finally:
            up.close()
    finally:
        orphan.stop()


# --- 3. a taken port ----------------------------------------------------------------------


def test_an_explicit_port_that_is_taken_is_an_error(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = nano("up", "--port", str(port), cwd=folder)
    assert result.returncode == 1, describe(result)
    assert f"port {port} is taken" in flat(result.stderr), describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert not (folder / ".nano" / "url").exists(), describe(result)


def test_the_default_port_moves_when_taken_and_the_banner_says_so(folder: Path) -> None:
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # taken already: just as good
            holder.bind(("127.0.0.1", 4222))
            holder.listen()
        up = Background(["up"], cwd=folder)
        try:
            line = up.wait_for_line("NATS ")
            up.wait_for_line("ready:")
        finally:
            up.close()
    assert "(port 4222 is taken)" in line, up.output()
    assert ":4222" not in line.split()[1], up.output()


# --- 4. `nano up --nats-url` is remembered for the folder ----------------------------------


def test_up_with_nats_url_is_remembered_by_publish(folder: Path, server: LocalServer) -> None:
    up = Background(["up", "--nats-url", server.url], cwd=folder)
    try:
        up.wait_for_line("ready:")
        result = nano(
            "publish", "hello", '{"name": "Ada"}', "--wait", "--timeout", "20", cwd=folder
        )
        assert result.returncode == 0, describe(result) + up.output()
        assert json.loads(result.stdout) == {"message": "Hello, Ada!", "length": 3}
    finally:
        up.close()
    assert not (folder / ".nano" / "url").exists(), up.output()


# --- 5. bad subjects and ids are one-line errors ------------------------------------------


def test_bad_subjects_and_ids_are_one_line_errors(folder: Path, up: Background) -> None:
    result = nano("publish", "some.subject", '{"a": 1}', cwd=folder)
    one_line_error(result, "no stream on this server stores subject 'some.subject'")
    result = nano(
        "publish", "hello", '{"name": "Ada"}', "--wait", "--execution", "bad id!", cwd=folder
    )
    one_line_error(result, "invalid execution id 'bad id!'")
    result = nano("cancel", "bad id!", "--workflow", "hello", cwd=folder)
    one_line_error(result, "invalid execution id 'bad id!'")


# --- 6. publish --wait says what really happened, and rides out a reconnect ----------------

SLOW = (
    "name: slow\nsteps:\n  wait: {node: delay, with: {seconds: 3}, next: after}\n"
    "  after: {node: log}\n"
)


def _started(url: str, workflow: str, timeout: float = 20.0) -> str:
    """Wait until an execution of ``workflow`` has its trigger stored; its id."""

    async def look() -> str | None:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().stream_info(
                f"NANO_{workflow.upper()}", subjects_filter=f"nano.{workflow}._start.*"
            )
        finally:
            await nc.close()
        found = sorted(info.state.subjects or {})
        return found[0].rsplit(".", 1)[1] if found else None

    deadline = time.monotonic() + timeout
    while (execution := asyncio.run(look())) is None:
        if time.monotonic() >= deadline:
            pytest.fail(f"no trigger of {workflow} stored within {timeout:g} s")
        time.sleep(0.1)
    return execution


@pytest.fixture
def slow_host(folder: Path, server: LocalServer) -> Iterator[Background]:
    """`nano host` running the slow workflow (and the sample) on :func:`server`."""
    (folder / "workflows" / "slow.yaml").write_text(SLOW)
    host = Background(["host", "workflows", "--nats-url", server.url], cwd=folder)
    try:
        host.wait_for_line("ready:")
        yield host
    finally:
        host.close()


def test_publish_wait_rides_out_a_server_restart(
    folder: Path, server: LocalServer, slow_host: Background
) -> None:
    waiting = Background(
        ["publish", "slow", "{}", "--wait", "--timeout", "25", "--nats-url", server.url],
        cwd=folder,
    )
    try:
        _started(server.url, "slow")
        server.restart()
        assert waiting.wait(40) == 0, waiting.output() + slow_host.output()
    finally:
        waiting.close()


def test_publish_wait_says_the_connection_is_lost(
    folder: Path, server: LocalServer, slow_host: Background
) -> None:
    waiting = Background(
        ["publish", "slow", "{}", "--wait", "--timeout", "4", "--nats-url", server.url],
        cwd=folder,
    )
    try:
        _started(server.url, "slow")
        server.kill()
        assert waiting.wait() == 3, waiting.output()
        err = flat("".join(waiting.stderr))
        assert "the connection to NATS is lost (reconnecting)" in err, waiting.output()
        assert "Traceback" not in err, waiting.output()
    finally:
        waiting.close()


def test_publish_wait_says_the_trigger_is_stored_without_result(
    folder: Path, server: LocalServer, slow_host: Background
) -> None:
    slow_host.proc.send_signal(signal.SIGINT)  # the tables stay provisioned; no host runs
    assert slow_host.wait() == 0, slow_host.output()
    result = nano(
        "publish",
        "hello",
        '{"name": "Ada"}',
        "--wait",
        "--timeout",
        "2",
        "--nats-url",
        server.url,
        cwd=folder,
    )
    assert result.returncode == 3, describe(result)
    assert "the trigger is stored, but there is no result yet" in flat(result.stderr), describe(
        result
    )


# --- 7. a declared trigger subject gets an execution id and honours --wait -----------------


def test_publish_to_a_trigger_subject_starts_an_execution(folder: Path) -> None:
    text = HELLO.read_text().replace("name: hello\n", "name: hi\ntrigger: {subjects: [people.*]}\n")
    (folder / "workflows" / "hello.yaml").write_text(text)
    up = Background(["up", "--port", "0"], cwd=folder)
    try:
        up.wait_for_line("ready:")
        waited = nano(
            "publish", "people.new", '{"name": "Ada"}', "--wait", "--timeout", "20", cwd=folder
        )
        assert waited.returncode == 0, describe(waited) + up.output()
        assert json.loads(waited.stdout) == {"message": "Hello, Ada!", "length": 3}
        started = nano(
            "publish", "people.new", '{"name": "Bob"}', "--execution", "bob1", cwd=folder
        )
        assert started.returncode == 0, describe(started)
        assert started.stdout.strip() == "execution bob1", describe(started)
        again = nano(
            "publish", "hi", '{"name": "Zed"}', "--wait", "--execution", "bob1", cwd=folder
        )
        assert json.loads(again.stdout) == {"message": "Hello, Bob!", "length": 3}, describe(again)
    finally:
        up.close()


# --- 9. a reused execution id says so; a non-positive timeout is refused -------------------


def test_a_reused_execution_id_says_its_payload_was_not_used(folder: Path, up: Background) -> None:
    first = nano(
        "publish", "hello", '{"name": "Ada"}', "--wait", "--execution", "fixed1", cwd=folder
    )
    assert first.returncode == 0, describe(first) + up.output()
    assert "started before" not in first.stderr, describe(first)
    second = nano(
        "publish", "hello", '{"name": "Bob"}', "--wait", "--execution", "fixed1", cwd=folder
    )
    assert second.returncode == 0, describe(second)
    assert json.loads(second.stdout)["message"] == "Hello, Ada!", describe(second)
    assert "execution fixed1 was started before" in flat(second.stderr), describe(second)
    assert "payload given now was not used" in flat(second.stderr), describe(second)
    for _ in range(2):
        plain = nano("publish", "hello", '{"name": "Cy"}', "--execution", "fixed2", cwd=folder)
        assert plain.returncode == 0, describe(plain)
    assert "execution fixed2 was started before" in flat(plain.stderr), describe(plain)


@pytest.mark.parametrize("timeout", ["-1", "0"])
def test_a_non_positive_timeout_is_refused(folder: Path, timeout: str) -> None:
    result = nano("publish", "hello", "{}", "--wait", "--timeout", timeout, cwd=folder)
    one_line_error(result, "--timeout must be a positive number of seconds")


# --- 8. cancel says when there is nothing to cancel; -w means --wait only ------------------


def test_cancel_of_an_unknown_workflow_or_a_finished_execution_says_so(
    folder: Path, up: Background
) -> None:
    result = nano("cancel", "abc", "--workflow", "nosuch", cwd=folder)
    one_line_error(result, "no workflow 'nosuch' on this server", "hello")
    result = nano("cancel", "abc", "--workflow", "hello", cwd=folder)
    one_line_error(result, "workflow 'hello' has no execution 'abc'")
    done = nano("publish", "hello", '{"name": "Ada"}', "--wait", "--execution", "done1", cwd=folder)
    assert done.returncode == 0, describe(done) + up.output()
    for extra in ([], ["--workflow", "hello"]):
        result = nano("cancel", "done1", *extra, cwd=folder)
        one_line_error(result, "execution done1 of hello already finished (succeeded)")


def test_short_w_is_wait_and_nothing_else(folder: Path) -> None:
    result = nano("cancel", "abc", "-w", "hello", cwd=folder)
    assert result.returncode == 2 and "No such option: -w" in result.stderr, describe(result)


# --- 10. help texts ----------------------------------------------------------------------

COMMANDS = ["up", "host", "publish", "validate", "compile", "graph", "cancel"]


def test_every_option_and_argument_has_a_description() -> None:
    import typer.main

    from nanoservice.cli import app

    group = typer.main.get_command(app)
    missing = [
        f"nano {name} {param.name}"
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_python_types_nor_missing_commands(tmp_path: Path, command: str) -> None:
    result = nano(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    for wrong in ("<bool>", "list[", "nano deploy"):
        assert wrong not in result.stdout, describe(result)


# --- 11. Ctrl-C drains with a countdown and a bound; a second Ctrl-C stops at once ---------

NAPPING = (
    "name: nap\nsteps:\n  nap: {node: delay, with: {seconds: 4}, timeout: 6, next: after}\n"
    "  after: {node: log}\n"
)


def _in_flight(url: str, workflow: str, step: str, timeout: float = 20.0) -> None:
    """Wait until the step's consumer has a message delivered and not yet acknowledged."""

    async def pending() -> int:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(
                f"NANO_{workflow.upper()}", consumer_name(step)
            )
        finally:
            await nc.close()
        return info.num_ack_pending or 0

    deadline = time.monotonic() + timeout
    while not asyncio.run(pending()):
        if time.monotonic() >= deadline:
            pytest.fail(f"no message of {workflow}.{step} in flight within {timeout:g} s")
        time.sleep(0.1)


@pytest.mark.parametrize("second_ctrl_c", [False, True], ids=["grace-runs-out", "second-ctrl-c"])
def test_ctrl_c_with_a_step_in_flight(folder: Path, second_ctrl_c: bool) -> None:
    (folder / "workflows" / "nap.yaml").write_text(NAPPING)
    grace = "60" if second_ctrl_c else "1"
    up = Background(["up", "--port", "0", "--grace", grace], cwd=folder)
    try:
        up.wait_for_line("ready:")
        url = (folder / ".nano" / "url").read_text().strip()
        started = nano("publish", "nap", "{}", "--execution", "nap1", cwd=folder)
        assert started.returncode == 0, describe(started)
        _in_flight(url, "nap", "nap")
        up.proc.send_signal(signal.SIGINT)
        line = up.wait_for_line("draining:")
        assert "1 message(s) in flight, stopping in" in line, up.output()
        if second_ctrl_c:
            up.proc.send_signal(signal.SIGINT)
        assert up.wait() == 1, up.output()  # STOP_TIMEOUT (20 s) < the 60 s grace
        err = flat("".join(up.stderr))
        assert "stopped with 1 message(s) in flight" in err, up.output()
        assert "Traceback" not in err, up.output()
    finally:
        up.close()
    again = Background(["up", "--port", "0"], cwd=folder)
    try:  # nothing was lost: the message comes back and the execution finishes
        again.wait_for_line("ready:")
        result = nano("publish", "nap", "{}", "--wait", "--execution", "nap1", cwd=folder)
        assert result.returncode == 0, describe(result) + again.output()
    finally:
        again.close()


BIG_NODE = """\
from nanoservice import Context, node


@node("big")
async def big(ctx: Context, data: dict) -> dict:
    return {"s": "x" * int(data["n"])}
"""


def test_outputs_near_the_size_limit_no_longer_close_the_host_connection(tmp_path: Path) -> None:
    """Frames whose headers push them just over max_payload used to make the server close
    the connection for good (the host then idled); they are now sized with their headers
    and sent as claim checks (chunks that fit the limit), so every execution completes."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "big.yaml").write_text("name: big\nsteps:\n  make: {node: big}\n")
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "big.py").write_text(BIG_NODE)
    limit = 4096
    with LocalServer(ServerOptions(store_dir=tmp_path / "server", max_payload=limit)) as small:
        host = Background(["host", "workflows", "--nats-url", small.url], cwd=tmp_path)
        try:
            host.wait_for_line("ready:")

            async def trigger() -> list[bool]:
                from nanoservice.nats.client import Client

                nc = await nats.connect(small.url)
                try:
                    client = Client(nc)
                    sizes = range(limit - 600, limit, 40)
                    ids = [await client.start("big", {"n": n}) for n in sizes]
                    outcomes = [await client.outcome("big", e, timeout=30) for e in ids]
                    return [
                        o.ok and len(o.output["s"]) == n
                        for o, n in zip(outcomes, sizes, strict=True)
                    ]
                finally:
                    await nc.close()

            assert all(asyncio.run(trigger())), host.output()
            assert host.proc.poll() is None, host.output()  # still serving
            assert "Traceback" not in "".join(host.stderr), host.output()
        finally:
            host.close()
