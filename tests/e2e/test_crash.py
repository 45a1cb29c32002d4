"""Crash tests: SIGKILL a `nano host` (or the nats-server) mid-stream; nothing is lost or doubled.

Every execution must end with exactly one message on ``nano.<wf>._done.<id>``, none on the
dead-letter subjects, and the right output. Each test also checks that the kill landed while
results were still partial, so it proves something.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from nanoservice.nats.client import Client
from nanoservice.nats.local_server import LocalServer
from nanoservice.runtime.envelope import decode_result
from tests.e2e.processes import Background

WF = "crash"
STREAM = "NANO_CRASH"
N = 300
READY_TIMEOUT = 40.0
FINISH_TIMEOUT = 60.0

# Three steps with `timeout: 1` (ack_wait 2 s, so unacked messages come back quickly); the
# middle one is slow and narrow, so 300 executions take a couple of seconds to get through.
WORKFLOW = f"""\
name: {WF}
input:
  type: object
  required: [n]
  properties:
    n: {{type: integer}}
steps:
  double:
    node: transform
    with: {{expr: '{{"n": input.n, "d": input.n * 2}}'}}
    timeout: 1
    next: pause
  pause:
    node: delay
    with: {{seconds: 0.01}}
    timeout: 1
    concurrency: 2
    next: finish
  finish:
    node: transform
    with: {{expr: '{{"n": prev.n, "r": prev.d + 1}}'}}
    timeout: 1
"""


def expected(n: int) -> dict[str, int]:
    return {"n": n, "r": 2 * n + 1}


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "project" / f"{WF}.yaml"
    path.parent.mkdir()
    path.write_text(WORKFLOW)
    return path


@pytest.fixture
def hosts() -> Iterator[list[Background]]:
    """Every `nano host` a test starts; whatever is left running is stopped afterwards."""
    started: list[Background] = []
    try:
        yield started
    finally:
        for host in started:
            host.close()


@pytest.fixture
async def client_nc(nats_url: str) -> AsyncIterator[NATS]:
    """The test's own connection; it rides out a server restart quickly."""
    nc = await nats.connect(
        nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
    )
    try:
        yield nc
    finally:
        await nc.close()


def start_host(hosts: list[Background], workflow: Path, url: str) -> Background:
    """`nano host` on the workflow file (provisions it), waited for until it consumes."""
    host = Background(["host", str(workflow), "--nats-url", url], cwd=workflow.parent)
    hosts.append(host)
    host.wait_for_line("ready:", timeout=READY_TIMEOUT)
    return host


async def subject_counts(nc: NATS, kind: str) -> dict[str, int]:
    """Messages per subject under ``nano.<wf>.<kind>.>`` (server-side count)."""
    info = await nc.jetstream().stream_info(STREAM, subjects_filter=f"nano.{WF}.{kind}.>")
    return dict(info.state.subjects or {})


async def done_count(nc: NATS) -> int:
    """Executions with a result so far; -1 while the server cannot answer."""
    try:
        return len(await subject_counts(nc, "_done"))
    except Exception:
        return -1


async def publish_all(nc: NATS, run: str) -> dict[str, int]:
    """Start N executions with ids we choose; returns id -> n."""
    client = Client(nc)
    executions = {f"{run}-{i:04d}": i for i in range(N)}
    for execution, n in executions.items():
        assert await client.start(WF, {"n": n}, execution=execution) == execution
    return executions


async def wait_for_results(nc: NATS, at_least: int, timeout: float, *procs: Background) -> int:
    """Poll until ``at_least`` executions have a result; fail with the hosts' output if not."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        seen = max(seen, await done_count(nc))
        if seen >= at_least:
            return seen
        for proc in procs:
            if proc.proc.poll() is not None:
                pytest.fail(f"`nano host` died ({seen}/{N} results)\n{proc.output()}")
        if time.monotonic() >= deadline:
            dlq = await subject_counts(nc, "_dlq")
            pytest.fail(
                f"only {seen} of {at_least} wanted results after {timeout:g} s "
                f"(dead letters: {len(dlq)})\n" + "\n".join(p.output() for p in procs)
            )
        await asyncio.sleep(0.05)


async def check_outcome(nc: NATS, executions: dict[str, int], *procs: Background) -> None:
    """Exactly one result per execution, no dead letters, right outputs, nothing left unacked."""
    done = await subject_counts(nc, "_done")
    dlq = await subject_counts(nc, "_dlq")
    logs = "\n".join(p.output() for p in procs)
    assert not dlq, f"{len(dlq)} dead letters, e.g. {sorted(dlq)[:5]}\n{logs}"
    wanted = {f"nano.{WF}._done.{e}" for e in executions}
    assert set(done) == wanted, (
        f"missing: {sorted(wanted - set(done))[:5]}, unexpected: {sorted(set(done) - wanted)[:5]}"
    )
    doubled = {s: c for s, c in done.items() if c != 1}
    assert not doubled, f"executions with more than one result: {doubled}"

    # Re-published step inputs were de-duplicated (Nats-Msg-Id): one message per hop.
    every = await subject_counts(nc, "*")
    stored = {s: c for s, c in every.items() if c != 1}
    assert not stored, f"subjects stored more than once: {dict(list(stored.items())[:5])}"
    # The first step reads the trigger subject itself; later steps have input subjects.
    hops = ("_start", "pause", "finish", "_done")
    want = {f"nano.{WF}.{hop}.{e}" for hop in hops for e in executions}
    assert set(every) == want, f"unexpected subjects: {sorted(set(every) ^ want)[:5]}"

    js = nc.jetstream()
    wrong = {}
    for execution, n in executions.items():
        msg = await js.get_last_msg(STREAM, f"nano.{WF}._done.{execution}")
        result = decode_result(msg.data)
        if result.output != expected(n) or result.step != "finish":
            wrong[execution] = (result.step, result.output)
    assert not wrong, f"wrong outputs: {dict(list(wrong.items())[:5])}"

    # Every step message settled: nothing pending or awaiting an ack on any consumer.
    deadline = time.monotonic() + 10
    while True:
        unsettled = {
            c.name: (c.num_pending, c.num_ack_pending) for c in await js.consumers_info(STREAM)
        }
        if all(p == 0 and a == 0 for p, a in unsettled.values()):
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"consumers not settled after every result: {unsettled}\n{logs}")
        await asyncio.sleep(0.1)


async def test_host_sigkill_mid_stream(
    nats_url: str, client_nc: NATS, workflow_file: Path, hosts: list[Background]
) -> None:
    first = start_host(hosts, workflow_file, nats_url)
    executions = await publish_all(client_nc, "k")

    await wait_for_results(client_nc, 1, FINISH_TIMEOUT, first)
    first.kill()
    at_kill = await done_count(client_nc)
    assert 0 < at_kill < N, f"the kill did not land mid-stream ({at_kill}/{N} results)"
    # The dead host's unacked deliveries stay pending on the server until ack_wait runs out.
    in_flight = {
        c.name: c.num_ack_pending for c in await client_nc.jetstream().consumers_info(STREAM)
    }
    assert sum(in_flight.values()) > 0, f"no message was in flight at the kill: {in_flight}"

    second = start_host(hosts, workflow_file, nats_url)
    await wait_for_results(client_nc, N, FINISH_TIMEOUT, second)
    await check_outcome(client_nc, executions, first, second)
    assert second.proc.poll() is None, f"second host died\n{second.output()}"


async def test_server_sigkill_and_restart_mid_stream(
    nats_server: LocalServer,
    nats_url: str,
    client_nc: NATS,
    workflow_file: Path,
    hosts: list[Background],
) -> None:
    host = start_host(hosts, workflow_file, nats_url)
    executions = await publish_all(client_nc, "s")

    await wait_for_results(client_nc, 1, FINISH_TIMEOUT, host)
    await asyncio.to_thread(nats_server.kill)
    await asyncio.to_thread(nats_server.start)
    at_restart = await wait_done_count(client_nc, host)
    assert at_restart < N, f"the server kill did not land mid-stream ({at_restart}/{N})"

    await wait_for_results(client_nc, N, FINISH_TIMEOUT, host)
    await check_outcome(client_nc, executions, host)
    assert host.proc.poll() is None, f"host died\n{host.output()}"


async def wait_done_count(nc: NATS, host: Background, timeout: float = 20.0) -> int:
    """The result count as soon as the test's connection is back after the restart."""
    deadline = time.monotonic() + timeout
    while (count := await done_count(nc)) < 0:
        if time.monotonic() >= deadline:
            pytest.fail(f"test client did not reconnect within {timeout:g} s\n{host.output()}")
        await asyncio.sleep(0.1)
    return count
