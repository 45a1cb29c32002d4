"""The supervisor: runs process specs as replicas, prefixes their output, restarts them.

- Each replica's stdout and stderr lines are forwarded prefixed ``[<name>/<replica>]``.
- A replica that exits while it should run is restarted with backoff, and the log says why
  it ended (exit code, signal, its memory limit); ``give_up`` quick deaths in a row and it
  is left stopped, reported as ``failed``.
- A replica over its memory limit (RSS) is killed and restarted, the reason logged.
- ``stop`` sends SIGTERM to every replica (they drain), SIGKILL after the grace period;
  ``stop_now`` asks again (a host stops at once on a second signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nanoservice.supervise.limits import describe_exit, preexec, rss_bytes
from nanoservice.supervise.spec import ProcessSpec

__all__ = ["Replica", "Supervisor"]

log = logging.getLogger("nanoservice.supervise")

CLEAN = ("exit code 0", "killed by SIGTERM")
"""How a process asked to stop may end and count as stopped cleanly."""
MEMORY_CHECK = 0.2
"""Seconds between RSS reads of a process with a memory limit."""


@dataclass
class Replica:
    """One running copy of a spec and what ``nano ps`` shows of it."""

    spec: ProcessSpec
    index: int
    state: str = "starting"  # starting | ready | restarting | stopping | stopped | failed
    pid: int | None = None
    restarts: int = 0
    started: float = 0.0
    """Wall-clock start of the current process (epoch seconds)."""
    last_exit: str | None = None
    proc: asyncio.subprocess.Process | None = None
    wanted: bool = True
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    kill_reason: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.index}"

    def info(self) -> dict[str, object]:
        return {
            "group": self.spec.name,
            "replica": self.index,
            "steps": list(self.spec.steps),
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "started": self.started,
            "rss": rss_bytes(self.pid) if self.pid is not None else None,
            "last_exit": self.last_exit,
        }


Sink = Callable[[str], None]
RESTARTED = "restarted with a new command"


def _ended(replica: Replica) -> bool:
    return replica.task is None or replica.task.done()


def _print(stream: object) -> Sink:
    def write(line: str) -> None:
        print(line, file=stream, flush=True)  # type: ignore[call-overload]

    return write


class Supervisor:
    """Runs and restarts the replicas of process specs; see the module docstring."""

    def __init__(
        self,
        *,
        out: Sink | None = None,
        err: Sink | None = None,
        say: Sink | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.out = out or _print(sys.stdout)
        self.err = err or _print(sys.stderr)
        self.say = say or self.out
        self.on_change = on_change or (lambda: None)
        self.specs: dict[str, ProcessSpec] = {}
        self.replicas: dict[str, list[Replica]] = {}
        self.stopping = False

    # -- desired state ---------------------------------------------------------------

    def run(self, spec: ProcessSpec, count: int = 1) -> None:
        """Run ``count`` replicas of ``spec`` (replacing a spec of that name: its replicas
        are restarted with the new command, not counted as failures)."""
        old = self.specs.get(spec.name)
        self.specs[spec.name] = spec
        if old is not None and old != spec:
            for replica in self.replicas.get(spec.name, []):
                if replica.wanted:
                    replica.spec = spec
                    replica.kill_reason = RESTARTED
                    self._terminate(replica, "its command changed; restarting it")
        self.scale(spec.name, count)

    def scale(self, name: str, count: int) -> None:
        """Grow or shrink ``name`` to ``count`` running replicas (highest index goes first)."""
        spec = self.specs[name]
        kept = [r for r in self.replicas.get(name, []) if r.wanted or not _ended(r)]
        self.replicas[name] = kept  # replicas scaled away and ended are forgotten
        running = [r for r in kept if r.wanted]
        for replica in running[count:]:
            replica.wanted = False
            self._terminate(replica, "scaled down")
        taken = {r.index for r in self.replicas[name] if r.task is not None and not r.task.done()}
        index = 1
        for _ in range(count - len(running)):
            while index in taken:
                index += 1
            taken.add(index)
            replica = Replica(spec, index)
            self.replicas[name] = [r for r in self.replicas[name] if r.index != index]
            self.replicas[name].append(replica)
            replica.task = asyncio.create_task(self._keep(replica), name=f"keep {replica.label}")
        self.replicas[name].sort(key=lambda r: r.index)
        self.on_change()

    def count(self, name: str) -> int:
        """Replicas of ``name`` meant to run."""
        return sum(1 for r in self.replicas.get(name, []) if r.wanted)

    def all(self) -> Iterable[Replica]:
        for name in self.replicas:
            yield from self.replicas[name]

    async def wait_ready(self) -> None:
        """Until every wanted replica has said it is ready (or failed)."""
        while True:
            pending = [r for r in self.all() if r.wanted and r.state not in ("ready", "failed")]
            if not pending:
                return
            waiter = asyncio.ensure_future(pending[0].ready.wait())
            try:
                await asyncio.wait([waiter], timeout=0.5)
            finally:
                waiter.cancel()

    @property
    def failed(self) -> list[Replica]:
        return [r for r in self.all() if r.state == "failed"]

    # -- stopping --------------------------------------------------------------------

    async def stop(self, grace: float) -> list[str]:
        """SIGTERM every replica, SIGKILL what is left after ``grace`` (+5 s for a host's own
        drain countdown); the replicas that did not end cleanly, with why."""
        self.stopping = True
        for replica in self.all():
            replica.wanted = False
            self._terminate(replica, None)
        tasks = [r.task for r in self.all() if r.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace + 5)
            if late:
                self.stop_now(signal.SIGKILL)
                await asyncio.wait(late, timeout=5)
        self.on_change()
        return [
            f"{r.label}: {r.last_exit}"
            for r in self.all()
            if r.last_exit not in (None, *CLEAN) and r.state != "failed"
        ]

    def stop_now(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal every live replica again (a host's second signal: stop at once)."""
        for replica in self.all():
            self._signal(replica, sig)

    # -- one replica -----------------------------------------------------------------

    def _terminate(self, replica: Replica, why: str | None) -> None:
        if why is not None and replica.proc is not None:
            self.say(f"{replica.label}: stopping ({why})")
        replica.state = "stopping" if replica.proc is not None else "stopped"
        replica.ready.set()
        self._signal(replica, signal.SIGTERM)

    @staticmethod
    def _signal(replica: Replica, sig: signal.Signals) -> None:
        proc = replica.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    async def _keep(self, replica: Replica) -> None:
        """Run ``replica`` until it is no longer wanted, restarting it with backoff."""
        failures, delay = 0, replica.spec.backoff.initial
        while replica.wanted and not self.stopping:
            spec = replica.spec
            began = time.monotonic()
            code = await self._run_once(replica)
            lived = 0.0 if code is None else time.monotonic() - began  # None: never started
            if not replica.wanted or self.stopping:
                break
            if replica.last_exit == RESTARTED:  # asked to, with a new command: not a failure
                continue
            backoff = spec.backoff
            if lived >= backoff.reset_after:
                failures, delay = 0, backoff.initial
            failures += 1
            if failures >= backoff.give_up:
                replica.state = "failed"
                replica.ready.set()
                self.say(
                    f"{replica.label}: ended {failures} times in a row, each within "
                    f"{backoff.reset_after:g} s of starting (last: {replica.last_exit}); "
                    "not restarting it"
                )
                self.on_change()
                return
            replica.state = "restarting"
            replica.restarts += 1
            self.say(f"{replica.label}: {replica.last_exit}; restarting in {delay:g} s")
            self.on_change()
            await asyncio.sleep(delay)
            delay = min(delay * backoff.factor, backoff.max)
        replica.state = "stopped"
        replica.ready.set()
        self.on_change()

    async def _run_once(self, replica: Replica) -> int | None:
        spec = replica.spec
        env = dict(os.environ if spec.env is None else spec.env)
        env.update(
            NANO_GROUP=spec.name,
            NANO_REPLICA=str(replica.index),
            PYTHONUNBUFFERED="1",
            COLUMNS=env.get("COLUMNS", "250"),
        )
        replica.ready.clear()
        replica.state = "starting"
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them
                preexec_fn=preexec(spec.limits),
            )
        except OSError as exc:
            replica.last_exit = f"cannot start {spec.argv[0]}: {exc.strerror or exc}"
            return None
        replica.proc, replica.pid, replica.started = proc, proc.pid, time.time()
        if spec.ready is None:
            self._ready(replica)
        self.on_change()
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.create_task(self._pump(replica, proc.stdout, self.out, spec.ready)),
            asyncio.create_task(self._pump(replica, proc.stderr, self.err, None)),
        ]
        watch = (
            asyncio.create_task(self._watch_memory(replica, proc, spec.limits.memory))
            if spec.limits.memory is not None
            else None
        )
        if not replica.wanted or self.stopping:  # stopped while it was starting
            self._signal(replica, signal.SIGTERM)
        code = await proc.wait()
        if watch is not None:
            watch.cancel()
        await asyncio.wait(pumps, timeout=2)
        replica.proc = None
        replica.last_exit = replica.kill_reason or describe_exit(code)
        replica.kill_reason = None
        return code

    async def _pump(
        self, replica: Replica, stream: asyncio.StreamReader, sink: Sink, ready: str | None
    ) -> None:
        prefix = f"[{replica.label}] "
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the reader's limit: take what is there
                raw = await stream.read(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink(prefix + line)
            if ready is not None and line.startswith(ready) and replica.state == "starting":
                self._ready(replica)

    def _ready(self, replica: Replica) -> None:
        replica.state = "ready"
        replica.ready.set()
        self.on_change()

    async def _watch_memory(
        self, replica: Replica, proc: asyncio.subprocess.Process, limit: int
    ) -> None:
        while proc.returncode is None:
            rss = rss_bytes(proc.pid)
            if rss is not None and rss > limit:
                replica.kill_reason = (
                    f"killed: memory {rss / 2**20:.0f} MiB over its limit of "
                    f"{limit / 2**20:.0f} MiB"
                )
                self.say(f"{replica.label}: {replica.kill_reason}")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return
            await asyncio.sleep(MEMORY_CHECK)
