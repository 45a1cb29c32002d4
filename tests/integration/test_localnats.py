"""A real nats-server: JetStream works, data survives restart and crash, a cluster forms."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from nanoservice.nats.local_cluster import LocalCluster
from nanoservice.nats.local_server import LocalServer, NatsServerError, ServerOptions


async def _publish(url: str, stream: str, payload: bytes) -> int:
    """Create ``stream`` on ``<stream>.>`` if needed, publish once, return the acked seq."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.a", payload)
        assert ack.stream == stream
        return ack.seq
    finally:
        await nc.close()


async def _read(url: str, stream: str, seq: int) -> bytes:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().get_msg(stream, seq)).data or b""
    finally:
        await nc.close()


async def test_jetstream_publish_and_read_back(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    ack = await js.publish("t.a", b"hello")
    assert (ack.stream, ack.seq, ack.duplicate) == ("T", 1, None)
    msg = await js.get_msg("T", 1)
    assert (msg.subject, msg.data) == ("t.a", b"hello")


async def test_restart_keeps_data_and_ports(nats_server: LocalServer) -> None:
    url, pid = nats_server.url, nats_server.pid
    seq = await _publish(url, "R", b"kept")
    await asyncio.to_thread(nats_server.restart)
    assert nats_server.url == url
    assert nats_server.pid not in (None, pid)
    assert await _read(url, "R", seq) == b"kept"


async def test_kill_then_start_recovers(nats_server: LocalServer) -> None:
    seq = await _publish(nats_server.url, "K", b"acked before crash")
    await asyncio.to_thread(nats_server.kill)
    assert not nats_server.running
    assert nats_server.pid is None
    await asyncio.to_thread(nats_server.start)
    # A process crash (not power loss) keeps acked writes: they are in the page cache.
    assert await _read(nats_server.url, "K", seq) == b"acked before crash"


def test_sync_interval_reaches_server(tmp_path: Path) -> None:
    options = ServerOptions(store_dir=tmp_path, sync_interval="always", max_payload=2 << 20)
    with LocalServer(options) as server, urllib.request.urlopen(f"{server.monitor_url}/varz") as r:
        varz = json.load(r)
    assert varz["jetstream"]["config"].get("sync_always") is True
    assert varz["max_payload"] == 2 << 20


def test_early_exit_reports_log_tail(nats_server: LocalServer, tmp_path: Path) -> None:
    taken = ServerOptions(store_dir=tmp_path / "second", port=nats_server.options.port)
    second = LocalServer(taken)
    with pytest.raises(NatsServerError, match="exited with code") as info:
        second.start()
    assert "address already in use" in str(info.value)
    assert not second.running


async def test_cluster_r3_stream_survives_losing_its_leader(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, n=3)
    await asyncio.to_thread(cluster.start)
    try:
        assert cluster.url == ",".join(cluster.urls)
        assert cluster.meta_leader() in {s.options.server_name for s in cluster.servers}
        nc = await nats.connect(servers=cluster.urls)
        try:
            js = nc.jetstream()
            info = await js.add_stream(name="C", subjects=["c.>"], num_replicas=3)
            assert info.config.num_replicas == 3
            assert (await js.publish("c.a", b"one")).seq == 1
            info = await js.stream_info("C")
            leader = info.cluster.leader if info.cluster else None
        finally:
            await nc.close()
        victim = next(s for s in cluster.servers if s.options.server_name == leader)
        survivors = [s.url for s in cluster.servers if s is not victim]
        await asyncio.to_thread(victim.stop)

        nc = await nats.connect(servers=survivors)
        try:
            js = nc.jetstream()
            ack = await _publish_until_acked(nc, "c.b", b"two", msg_id="c-b-1")
            assert (ack.stream, ack.seq) == ("C", 2)
            info = await js.stream_info("C")
            assert info.state.messages == 2
            assert info.cluster is not None and info.cluster.leader not in (None, leader)
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(cluster.stop)


async def _publish_until_acked(
    nc: Client, subject: str, payload: bytes, *, msg_id: str, attempts: int = 20
) -> PubAck:
    """Publish (deduplicated by ``msg_id``) until acked, while a new leader is elected."""
    js = nc.jetstream()
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await js.publish(subject, payload, timeout=1.0, headers={"Nats-Msg-Id": msg_id})
        except (TimeoutError, NoRespondersError, NoStreamResponseError, APIError) as err:
            last = err
            await asyncio.sleep(0.25)
    raise AssertionError(f"no PubAck after {attempts} attempts: {last!r}")
