"""The ``nano`` CLI as a user runs it: real subprocesses, each test in its own folder.

Every wait is bounded and a failure shows what the processes printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.processes import NANO, Background, nano_env

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "workflows" / "hello.yaml"

CMD_TIMEOUT = 30.0


def nano(*args: str, cwd: Path, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run one `nano` command to completion (bounded)."""
    try:
        return subprocess.run(
            [str(NANO), *args],
            cwd=cwd,
            env=nano_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"`nano {' '.join(args)}` still running after {timeout:g} s\n"
            f"--- stdout ---\n{exc.stdout or ''}\n--- stderr ---\n{(exc.stderr or '')[-3000:]}"
        )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(map(str, result.args))} (exit {result.returncode})\n"
        f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )


def flat(text: str) -> str:
    """Whitespace collapsed, so a wrapped console message still matches."""
    return " ".join(text.split())


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(p) for p in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh project folder with the sample workflow, as `nano new` would leave it."""
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    return tmp_path


@pytest.fixture
def up(project: Path) -> Iterator[Background]:
    """`nano up --port 0` running in :func:`project`, ready to consume."""
    proc = Background(["up", "--port", "0"], cwd=project)
    try:
        proc.wait_for_line("ready:")
        yield proc
    finally:
        proc.close()


# --- (a) nano up / publish --wait / Ctrl-C -------------------------------------------------


def test_up_publish_wait_and_ctrl_c(project: Path, up: Background) -> None:
    url = (project / ".nano" / "url").read_text().strip()
    assert url.startswith("nats://"), url
    assert reachable(url), f"{url} not reachable while `nano up` runs\n{up.output()}"
    servers = children(up.proc.pid)
    if Path(f"/proc/self/task/{os.getpid()}/children").exists():
        assert servers, f"no nats-server child found under `nano up`\n{up.output()}"

    result = nano("publish", "hello", '{"name": "Ada"}', "--wait", "--timeout", "20", cwd=project)
    assert result.returncode == 0, describe(result) + up.output()
    assert json.loads(result.stdout) == {"message": "Hello, Ada!", "length": 3}, describe(result)

    up.proc.send_signal(signal.SIGINT)
    code = up.wait()
    assert code == 0, up.output()
    assert not reachable(url), f"nats-server still answers at {url} after `nano up` exited"
    for pid in servers:
        assert not alive(pid), f"child {pid} of `nano up` outlived it\n{up.output()}"
    assert not (project / ".nano" / "url").exists(), "stale .nano/url left behind"


# --- (b) nano validate ---------------------------------------------------------------------

BAD_WORKFLOWS = {
    "bad_yaml": (
        "name: broken\nsteps:\n  a: [\n    node: transform\n",
        r"malformed YAML",
        None,
    ),
    "unknown_node": (
        "name: typo\nsteps:\n  first:\n    node: transfrom\n    with: {expr: '1'}\n",
        "unknown node 'transfrom'",
        ("first", 4, "did you mean 'transform'"),
    ),
    "unknown_step": (
        "name: dangling\nsteps:\n  first:\n    node: transform\n    with: {expr: '1'}\n"
        "    next: nowhere\n",
        "unknown step 'nowhere'",
        ("first", 6, None),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WORKFLOWS))
def test_validate_reports_file_line_and_problem(project: Path, case: str) -> None:
    text, problem, where = BAD_WORKFLOWS[case]
    path = project / f"{case}.yaml"
    path.write_text(text)
    result = nano("validate", path.name, cwd=project)
    assert result.returncode == 1, describe(result)
    err = flat(result.stderr)
    assert problem in err, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    if where is None:  # a YAML error points at a line of the file
        assert f"{path.name}:" in err, describe(result)
        line = err.split(f"{path.name}:", 1)[1].split(":", 1)[0]
        assert line.isdigit() and 1 <= int(line) <= text.count("\n") + 1, describe(result)
        return
    step, line_no, hint = where
    assert f"{path.name}:{line_no}: step '{step}': {problem}" in err, describe(result)
    if hint:
        assert hint in err, describe(result)


def test_validate_ok_on_the_sample(project: Path) -> None:
    result = nano("validate", cwd=project)
    assert result.returncode == 0, describe(result)
    assert "hello" in result.stdout, describe(result)


# --- (c) nano publish with a payload that breaks the input schema --------------------------


def test_publish_schema_invalid_payload(project: Path, up: Background) -> None:
    result = nano("publish", "hello", '{"nom": "Ada"}', "--wait", "--timeout", "10", cwd=project)
    assert result.returncode == 1, describe(result) + up.output()
    err = flat(result.stderr)
    assert "input schema" in err and "'name' is a required property" in err, describe(result)
    assert "Traceback" not in result.stderr, describe(result)

    result = nano("publish", "hello", '{"name": "Ada"', cwd=project)
    assert result.returncode == 1, describe(result)
    assert "not valid JSON" in flat(result.stderr), describe(result)

    result = nano("publish", "nosuch", "{}", cwd=project)
    assert result.returncode == 1, describe(result)
    assert "no workflow 'nosuch'" in flat(result.stderr), describe(result)
    assert "hello" in flat(result.stderr), describe(result)


# --- (d) nano publish with no server --------------------------------------------------------


def test_publish_without_server_fails_cleanly(project: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    result = nano(
        "publish", "hello", '{"name": "Ada"}', "--wait", "--nats-url", url, cwd=project, timeout=8
    )
    assert result.returncode != 0, describe(result)
    assert "cannot reach NATS" in flat(result.stderr), describe(result)
    assert "Traceback" not in result.stderr, describe(result)


# --- (e) nano compile -----------------------------------------------------------------------


def test_compile_prints_the_routing_table(project: Path) -> None:
    result = nano("compile", "workflows/hello.yaml", cwd=project)
    assert result.returncode == 0, describe(result)
    table = json.loads(result.stdout)
    assert table["workflow"] == "hello", table
    assert set(table["steps"]) == {"normalize", "greet", "record"}, table


# --- nano graph and nano cancel ------------------------------------------------------------


def test_graph_prints_a_mermaid_flowchart(project: Path) -> None:
    result = nano("graph", "workflows/hello.yaml", cwd=project)
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("flowchart LR"), describe(result)
    assert "normalize --> greet" in result.stdout and "record --> done" in result.stdout


def test_cancel_finds_the_workflow_and_the_execution_ends_cancelled(project: Path) -> None:
    (project / "workflows" / "slow.yaml").write_text(
        "name: slow\nsteps:\n  wait: {node: delay, with: {seconds: 2}, next: after}\n"
        "  after: {node: log}\n"
    )
    restarted = Background(["up", "--port", "0"], cwd=project)
    try:
        restarted.wait_for_line("ready:")
        started = nano("publish", "slow", "{}", cwd=project)
        assert started.returncode == 0, describe(started)
        execution = started.stdout.split()[-1]
        cancelled = nano("cancel", execution, cwd=project)
        assert cancelled.returncode == 0, describe(cancelled)
        assert f"cancelled slow execution {execution}" in flat(cancelled.stdout)
        unknown = nano("cancel", "no-such-execution", cwd=project)
        assert unknown.returncode == 1 and "no workflow has an execution" in flat(unknown.stderr)
        waited = nano("publish", "slow", "{}", "--wait", "--execution", execution, cwd=project)
        assert waited.returncode == 1, describe(waited)
        assert "Cancelled" in flat(waited.stderr), describe(waited)
    finally:
        restarted.close()


def test_publish_reads_the_payload_from_a_file(project: Path, up: Background) -> None:
    (project / "payload.json").write_text('{"name": "Grace"}')
    result = nano("publish", "hello", "@payload.json", "--wait", cwd=project)
    assert result.returncode == 0, describe(result)
    assert json.loads(result.stdout) == {"message": "Hello, Grace!", "length": 5}
    missing = nano("publish", "hello", "@nope.json", cwd=project)
    assert missing.returncode == 1 and "cannot read nope.json" in flat(missing.stderr)


def test_up_cluster_runs_the_sample_on_three_servers_with_r3_streams(project: Path) -> None:
    import asyncio

    import nats

    cluster = Background(["up", "--cluster"], cwd=project)
    try:
        cluster.wait_for_line("ready:")
        url = (project / ".nano" / "url").read_text().strip()
        assert len(url.split(",")) == 3, url
        result = nano("publish", "hello", '{"name": "Ada"}', "--wait", cwd=project)
        assert result.returncode == 0, describe(result)
        assert json.loads(result.stdout) == {"message": "Hello, Ada!", "length": 3}

        async def replicas() -> int:
            nc = await nats.connect(url.split(","))
            try:
                info = await nc.jetstream().stream_info("NANO_HELLO")
            finally:
                await nc.close()
            return info.config.num_replicas or 1

        assert asyncio.run(replicas()) == 3
        cluster.proc.send_signal(signal.SIGINT)
        assert cluster.wait() == 0, cluster.output()
    finally:
        cluster.close()
