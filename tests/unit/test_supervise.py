"""The supervisor on small real child processes (python -c), and the autoscaling rule."""

from __future__ import annotations

import asyncio
import mmap
import os
import sys
from pathlib import Path

import pytest

from nanoservice.deploy import ReplicaPolicy
from nanoservice.supervise import Backoff, Limits, ProcessSpec, Supervisor
from nanoservice.supervise.autoscale import Autoscaler, decide
from nanoservice.supervise.limits import describe_exit
from nanoservice.supervise.state import read_state, write_state

pytestmark = pytest.mark.timeout(60)

FAST = Backoff(initial=0.05, factor=2, max=0.2, reset_after=5, give_up=3)


def py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    async def wait_for(self, text: str, timeout: float = 20) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                await asyncio.sleep(0.02)


def supervisor(log: Log) -> Supervisor:
    return Supervisor(out=log, err=log, say=log)


async def test_output_is_prefixed_and_ready_is_read_from_stdout() -> None:
    log = Log()
    sup = supervisor(log)
    code = "import sys,time; print('ready now'); print('oops', file=sys.stderr); time.sleep(30)"
    sup.run(ProcessSpec("web", py(code)), 2)
    await asyncio.wait_for(sup.wait_ready(), 20)
    assert {r.state for r in sup.all()} == {"ready"}
    assert "[web/1] ready now" in log.lines and "[web/2] ready now" in log.lines
    assert await log.wait_for("[web/2] oops") == "[web/2] oops"  # stderr, read on its own
    assert await sup.stop(5) == []  # SIGTERM ends them: that is a clean stop


async def test_a_crash_is_restarted_with_backoff_and_repeated_deaths_are_reported() -> None:
    log = Log()
    sup = supervisor(log)
    sup.run(ProcessSpec("bad", py("import sys; sys.exit(3)"), ready=None, backoff=FAST))
    said = await log.wait_for("not restarting it")
    assert said.startswith("bad/1: ended 3 times in a row") and "exit code 3" in said
    assert [line for line in log.lines if "restarting in" in line] == [
        "bad/1: exit code 3; restarting in 0.05 s",
        "bad/1: exit code 3; restarting in 0.1 s",
    ]
    (replica,) = sup.all()
    assert replica.state == "failed" and replica.restarts == 2
    await sup.stop(1)


async def test_limits_are_set_in_the_child() -> None:
    """Even when the supervisor itself is past the child's address-space limit (as `nano up`
    with everything imported can be): the child starts, then runs under the limit."""
    ballast = mmap.mmap(-1, 1024 * 2**20)  # 1 GiB of address space, no memory touched
    log = Log()
    sup = supervisor(log)
    code = (
        "import resource; print('ready', resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
        " resource.getrlimit(resource.RLIMIT_CPU)[0]); b = bytearray(400 * 2**20)"
    )
    limits = Limits(open_files=64, cpu=100, address_space=300 * 2**20)
    sup.run(ProcessSpec("lim", py(code), limits=limits, backoff=FAST))
    assert await log.wait_for("[lim/1] ready 64 100")
    assert await log.wait_for("[lim/1] MemoryError")  # the allocation past RLIMIT_AS failed
    await sup.stop(1)
    ballast.close()


async def test_memory_over_the_limit_is_killed_and_restarted_with_the_reason() -> None:
    log = Log()
    sup = supervisor(log)
    code = "import time\nhog = []\nwhile True:\n    hog.append(b'x' * 5_000_000); time.sleep(0.01)"
    sup.run(ProcessSpec("hog", py(code), limits=Limits(memory=80 * 2**20), ready=None))
    said = await log.wait_for("; restarting in")
    assert said.startswith("hog/1: killed: memory ") and "over its limit of 80 MiB" in said
    await sup.stop(1)


async def test_scaling_down_stops_the_highest_replicas() -> None:
    log = Log()
    sup = supervisor(log)
    sup.run(ProcessSpec("w", py("import time; print('ready'); time.sleep(30)")), 3)
    await asyncio.wait_for(sup.wait_ready(), 20)
    sup.scale("w", 1)
    await log.wait_for("w/3: stopping (scaled down)")
    assert sup.count("w") == 1 and [r.index for r in sup.all() if r.wanted] == [1]
    await sup.stop(5)


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-24) == "SIGXCPU (its CPU-time limit)"


@pytest.mark.parametrize(
    ("backlog", "wanted", "why"),
    [
        (0, 1, "backlog 0 (target 10 per replica, floor min 1)"),
        (25, 3, "backlog 25 (target 10 per replica)"),
        (900, 4, "backlog 900 (target 10 per replica, capped at max 4)"),
    ],
)
def test_the_wanted_count_follows_the_backlog(backlog: int, wanted: int, why: str) -> None:
    decision = decide(2, backlog, ReplicaPolicy(min=1, max=4, target=10))
    assert (decision.wanted, decision.reason) == (wanted, why)


async def test_the_autoscaler_waits_out_its_cooldown() -> None:
    said: list[str] = []
    count = [1]
    backlog = [50]

    async def read() -> int:
        return backlog[0]

    def scale(n: int) -> None:
        count[0] = n

    policy = ReplicaPolicy(min=1, max=3, target=10, cooldown=60)
    scaler = Autoscaler("g", policy, read, lambda: count[0], scale, said.append)
    assert (await scaler.step()) is not None and count == [3]
    backlog[0] = 0
    assert await scaler.step() is None and count == [3]  # within the cool-down: no change
    scaler.last_change -= 61
    assert await scaler.step() is not None and count == [1]
    assert said == [
        "autoscale g: up 1 -> 3 replicas, backlog 50 (target 10 per replica, capped at max 3)",
        "autoscale g: down 3 -> 1 replicas, backlog 0 (target 10 per replica, floor min 1)",
    ]


async def test_state_of_a_supervisor_that_is_gone_shows_gone(tmp_path: Path) -> None:
    sup = supervisor(Log())
    sup.run(ProcessSpec("w", py("import time; print('ready'); time.sleep(30)")))
    await asyncio.wait_for(sup.wait_ready(), 20)
    path = tmp_path / "processes.json"
    write_state(path, sup.all(), mode="micro")
    state = read_state(path)
    assert state is not None and state["running"]
    (proc,) = state["processes"]
    assert proc["state"] == "ready" and proc["rss"] > 0 and proc["uptime"] >= 0
    await sup.stop(5)
    path.write_text(path.read_text().replace(f'"supervisor": {os.getpid()}', '"supervisor": 0'))
    state = read_state(path)
    assert state is not None and not state["running"] and state["processes"][0]["state"] == "gone"


async def test_a_changed_spec_restarts_its_replicas_with_the_new_command() -> None:
    log = Log()
    sup = supervisor(log)
    sup.run(ProcessSpec("w", py("import time; print('ready v1'); time.sleep(30)")), 2)
    await asyncio.wait_for(sup.wait_ready(), 20)
    sup.run(ProcessSpec("w", py("import time; print('ready v2'); time.sleep(30)")), 2)
    assert await log.wait_for("[w/1] ready v2") and await log.wait_for("[w/2] ready v2")
    assert not [line for line in log.lines if "restarting in" in line]  # not a crash
    assert [r.restarts for r in sup.all()] == [0, 0]
    await sup.stop(5)
