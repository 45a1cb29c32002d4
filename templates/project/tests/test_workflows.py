"""The project's workflows, run in memory (fast) and on a real nats-server (what counts)."""

from __future__ import annotations

from pathlib import Path

import nats

from nanoservice import Client, compile_file, serve
from nanoservice.nats.backend import nats_backend
from nanoservice.nats.local_server import LocalServer, ServerOptions
from nanoservice.nats.provision import provision
from nanoservice.testing.memory import MemoryBus
from nanoservice.workflow.project import project_registry

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = project_registry([ROOT / "nodes"])
HELLO = compile_file(ROOT / "workflows" / "hello.yaml", REGISTRY)
WELCOME = compile_file(ROOT / "workflows" / "welcome.yaml", REGISTRY)


async def test_hello_and_welcome_in_memory() -> None:
    bus = MemoryBus()
    async with bus.hosting([HELLO, WELCOME], REGISTRY):
        hello = await bus.run("hello", {"name": " Ada "})
        welcome = await bus.run("welcome", {"name": "Ada"})
    assert hello.ok, hello
    assert hello.output == {"message": "Hello, Ada!", "length": 3}
    assert welcome.ok, welcome
    assert welcome.output == {"message": "Welcome, Ada!"}


async def test_welcome_on_a_real_server(tmp_path: Path) -> None:
    with LocalServer(ServerOptions(store_dir=tmp_path / "nats")) as server:
        nc = await nats.connect(server.url)
        try:
            await provision(nc.jetstream(), WELCOME)
            async with nats_backend(server.url) as backend, serve(backend, [WELCOME], REGISTRY):
                outcome = await Client(nc).run("welcome", {"name": "Grace"}, timeout=20)
        finally:
            await nc.close()
    assert outcome.ok, outcome
    assert outcome.output == {"message": "Welcome, Grace!"}
