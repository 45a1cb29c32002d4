"""Faults under `nano up` in nano mode (one process per step), one `nano up` for them all:

- SIGKILL of a step's only process and of one of three replicas, mid-batch: the supervisor
  restarts them and every execution completes with exactly one result;
- a group with min/max replicas grows under a backlog and drops back to its minimum idle;
- a node that allocates without bound is killed at its memory limit (the log says why), its
  message is dead-lettered, and the other processes keep serving;
- hot reload: a step added by a new revision gets a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import nats
import pytest

from nanoservice.nats.client import Client
from tests.e2e.modes_project import Up, make_project, on_nats, results_per_execution

pytestmark = pytest.mark.timeout(300)

SLOW = """\
name: slow
steps:
  a: {node: transform, with: {expr: '{"n": input.n}'}, next: b}
  b: {node: delay, with: {seconds: 0.2}, concurrency: 2, timeout: 2, next: c}
  c: {node: transform, with: {expr: '{"n": prev.n * 10}'}, timeout: 2}
"""
AUTO = """\
name: auto
steps:
  work: {node: delay, with: {seconds: 0.3}, concurrency: 1}
"""
BOMB = """\
name: bomb
steps:
  eat: {node: bomb, timeout: 2, retry: {max_attempts: 1}}
"""
BOMB_NODE = '''\
import time
from typing import Any

from nanoservice import Context, node


@node("bomb")
def bomb(ctx: Context, input: Any) -> Any:
    """Allocates without bound (10 MB every 10 ms)."""
    hog = []
    while True:
        hog.append(b"x" * 10_000_000)
        time.sleep(0.01)
'''
NANO_YAML = """\
mode: nano
groups:
  slow_b: {steps: [slow.b], replicas: 3}
  auto: {steps: [auto], replicas: {min: 1, max: 3, target: 4, cooldown: 1, interval: 0.3}}
  bomb: {steps: [bomb], resources: {memory: 150Mi}}
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = make_project(
        tmp_path_factory.mktemp("faults"), workflows={"slow": SLOW, "auto": AUTO, "bomb": BOMB}
    )
    (root / "nodes" / "bomb.py").write_text(BOMB_NODE)
    (root / "nano.yaml").write_text(NANO_YAML)
    running = Up(root, ready_timeout=120)
    yield running
    running.close()


def pid_of(up: Up, group: str, replica: int = 1) -> int:
    (proc,) = [p for p in up.ps() if p["group"] == group and p["replica"] == replica]
    assert proc["state"] == "ready", proc
    return int(proc["pid"])


def test_processes_are_one_per_step_with_the_groups_replicas(up: Up) -> None:
    groups = sorted((p["group"], p["replica"]) for p in up.ps())
    assert groups == [
        ("auto.work", 1),
        ("bomb.eat", 1),
        ("hello.greet", 1),
        ("hello.normalize", 1),
        ("hello.record", 1),
        ("slow.a", 1),
        ("slow.b", 1),
        ("slow.b", 2),
        ("slow.b", 3),
        ("slow.c", 1),
    ]


def test_every_process_serves_its_own_metrics_listed_for_prometheus(up: Up) -> None:
    """One file_sd file per process in .nano/prometheus; each target answers with the
    metrics of its own step only (the hello run below goes through three processes)."""
    on_nats(up.url, lambda nc: Client(nc).run("hello", {"name": "Ada"}, timeout=60))
    folder = up.root / up.data_dir / "prometheus"
    listed = {}
    for path in sorted(folder.glob("*.json")):
        ((group,),) = [[g] for g in json.loads(path.read_text())]
        listed[group["labels"].get("process", "nano up")] = group["targets"][0]
    hosts = sorted(f"{p['group']}/{p['replica']}" for p in up.ps())
    assert sorted(listed) == sorted([*hosts, "nano up"])
    text = httpx.get(f"http://{listed['hello.greet/1']}/metrics", timeout=10).text
    assert 'nano_step_messages_total{step="greet",workflow="hello"} 1.0' in text, text
    assert 'step="normalize"' not in text  # another process's step
    own = httpx.get(f"http://{listed['nano up']}/metrics", timeout=10).text  # the supervisor
    assert 'nano_supervisor_replicas{process="slow.b"} 3.0' in own, own


def test_sigkill_of_step_processes_mid_batch_loses_and_duplicates_nothing(up: Up) -> None:
    victims = [pid_of(up, "slow.b", 2), pid_of(up, "slow.c")]

    async def batch(nc: nats.NATS) -> None:
        client = Client(nc)
        runs = [asyncio.ensure_future(client.run("slow", {"n": n}, timeout=90)) for n in range(60)]
        await asyncio.sleep(0.7)  # mid-batch: some done, some in flight, most waiting
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        outcomes = await asyncio.gather(*runs)
        assert [o.output for o in outcomes] == [{"n": n * 10} for n in range(60)]
        results = await results_per_execution(nc, "slow")
        assert {results.get(o.execution) for o in outcomes} == {1}, results

    on_nats(up.url, batch)
    up.wait_for(r"^slow\.b/2: killed by SIGKILL; restarting in ")
    up.wait_for(r"^slow\.c/1: killed by SIGKILL; restarting in ")
    restarted = {(p["group"], p["replica"]): p for p in up.ps()}
    for key in (("slow.b", 2), ("slow.c", 1)):
        assert restarted[key]["restarts"] == 1 and restarted[key]["pid"] not in victims
    own = json.loads((up.root / up.data_dir / "prometheus" / "targets.json").read_text())
    scrape = f"http://{own[0]['targets'][0]}/metrics"
    deadline = time.monotonic() + 30  # the counters follow the supervisor's state (~1 s)
    while 'nano_supervisor_restarts_total{process="slow.c"} 1.0' not in (
        text := httpx.get(scrape, timeout=10).text
    ):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert 'nano_supervisor_restarts_total{process="slow.b"} 1.0' in text, text


def test_a_backlog_scales_a_group_up_and_idle_brings_it_back(up: Up) -> None:
    async def backlog(nc: nats.NATS) -> None:
        client = Client(nc)
        outcomes = await asyncio.gather(*(client.run("auto", i, timeout=90) for i in range(30)))
        assert all(o.ok for o in outcomes)

    on_nats(up.url, backlog)
    grew = up.wait_for(r"^autoscale auto\.work: up 1 -> ")
    assert "backlog" in grew and "target 4 per replica" in grew, grew
    up.wait_for(r"^autoscale auto\.work: down \d -> 1 replicas, backlog 0", timeout=60)


def test_an_unbounded_allocation_is_killed_at_its_limit_and_the_rest_serve(up: Up) -> None:
    async def bomb(nc: nats.NATS) -> None:
        client = Client(nc)
        poisoned = asyncio.ensure_future(client.run("bomb", {}, timeout=90))
        killed = r"^bomb\.eat/1: killed: memory \d+ MiB over its limit of 150 MiB"
        await asyncio.to_thread(up.wait_for, killed)  # bounded
        greeted = await client.run("hello", {"name": "Ada"}, timeout=30)  # others serve
        assert greeted.output == {"message": "Hello, Ada!", "length": 3}
        outcome = await poisoned  # redelivered past its tries: dead-lettered, not run again
        assert not outcome.ok, outcome

    on_nats(up.url, bomb)
    up.wait_for(r"^bomb\.eat/1: killed: memory \d+ MiB over its limit of 150 MiB; restarting in ")
    assert len(up.lines(r"^bomb\.eat/1: killed: memory .*; restarting")) == 1  # ran once


def test_a_new_step_in_a_new_revision_gets_its_own_process(up: Up) -> None:
    grown = SLOW.replace("timeout: 2}\n", "timeout: 2, next: d}\n") + (
        "  d: {node: transform, with: {expr: '{\"n\": prev.n + 1}'}}\n"
    )
    assert grown != SLOW
    (up.root / "workflows" / "slow.yaml").write_text(grown)
    up.wait_for(r"^workflow slow \(.*\): revision \w+ live \(was ")
    up.wait_for(r"^\[slow\.d/1\] ready:")

    async def through_d(nc: nats.NATS) -> None:
        outcome = await Client(nc).run("slow", {"n": 4}, timeout=60)
        assert outcome.output == {"n": 41}, outcome

    on_nats(up.url, through_d)
    assert ("slow.d", 1) in {(p["group"], p["replica"]) for p in up.ps()}


def test_ctrl_c_stops_every_process(up: Up) -> None:
    pids = [p["pid"] for p in up.ps()]
    assert up.stop() == 0, up.process.output()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
