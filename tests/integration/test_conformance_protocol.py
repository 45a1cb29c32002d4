"""The raw messages in docs/protocol.md are what the Python hosts store on a real server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nats

from nanoservice.nats.backend import nats_backend
from nanoservice.nats.client import Client
from nanoservice.nats.provision import provision
from nanoservice.runtime.serve import serve
from nanoservice.sdk.node import Context, node
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file, compile_text

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```text\nMSG (\S+)\n(.*?)\n\n(.*?)\n```", re.S)


@node("boom")
async def boom(ctx: Context, input: Any) -> Any:
    raise RuntimeError("always broken")


REGISTRY = Registry.discover()
REGISTRY.add(boom)
FAIL = """
name: fail
steps:
  a: {node: transform, with: {expr: input}, next: b}
  b: {node: boom, retry: {max_attempts: 2, backoff: [0.1]}}
"""


def documented() -> list[tuple[str, dict[str, str], str]]:
    page = (ROOT / "docs" / "protocol.md").read_text()
    found = []
    for subject, head, body in BLOCK.findall(page):
        headers = dict(line.split(": ", 1) for line in head.splitlines())
        found.append((subject, headers, body))
    return found


def test_the_spec_shows_every_kind_of_message() -> None:
    kinds = {subject.split(".")[2] for subject, _, _ in documented()}
    assert {"_start", "_done", "_dlq", "greet", "record", "b"} <= kinds


async def test_each_documented_message_is_stored_exactly_so(nats_url: str) -> None:
    hello = compile_file(ROOT / "workflows" / "hello.yaml", REGISTRY)
    fail = compile_text(FAIL, REGISTRY)
    revisions = {"hello": hello.revision, "fail": fail.revision}
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for table in (hello, fail):
            await provision(js, table)
        async with nats_backend(nats_url) as backend, serve(backend, [hello, fail], REGISTRY):
            client = Client(nc)
            assert (await client.run("hello", {"name": " Ada "}, execution="e1", timeout=20)).ok
            assert not (await client.run("fail", {"x": 1}, execution="e2", timeout=20)).ok
        for subject, headers, body in documented():
            workflow = subject.split(".")[1]
            stream = f"NANO_{workflow.upper()}"
            stored = await js.get_last_msg(stream, subject)
            revision = revisions[workflow]
            got_headers = {k: v.replace(revision, "<revision>") for k, v in stored.headers.items()}
            assert got_headers == headers, subject
            got = stored.data.decode().replace(revision, "<revision>")
            assert json.loads(got) == json.loads(body), subject  # key order is not meaning
    finally:
        await nc.close()
