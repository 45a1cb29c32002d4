"""``nano deploy apply`` and ``nano deploy probe`` on a real nats-server, as real processes:
apply twice (the second changes nothing), change the workflow, apply again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from nanoservice.nats.local_server import free_port
from tests.e2e.processes import NANO, nano_env

ROOT = Path(__file__).resolve().parents[2]


def nano(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NANO), *args], cwd=cwd, env=nano_env(), capture_output=True, text=True, timeout=60
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "workflows" / "hello.yaml", folder / "workflows" / "hello.yaml")
    return folder


def test_apply_is_idempotent_and_reports_each_change(nats_url: str, tmp_path: Path) -> None:
    """The docs' example first (apply, then apply again: nothing changes), then a change."""
    from tests.unit.test_deploy_render_docs import blocks, console_runs

    (block,) = [b for b in blocks("console") if "$ nano deploy apply" in b]
    runs = console_runs(block)
    assert len(runs) == 2
    folder = project(tmp_path)
    for command, shown in runs:
        shown_url = command[command.index("--nats-url") + 1]
        result = nano(*[nats_url if a == shown_url else a for a in command[1:]], cwd=folder)
        assert result.returncode == 0, result.stderr
        assert result.stdout.replace(nats_url, shown_url) == shown
    first, again = (shown.splitlines() for _, shown in runs)
    assert sum(line.endswith(": created") for line in first) == 5
    assert again[-1].endswith(": 0 created, 0 updated, 5 unchanged")

    wf = folder / "workflows" / "hello.yaml"
    text = wf.read_text().replace("greeting: Hello", "greeting: Hi")
    wf.write_text(text.replace("    node: log\n", "    node: log\n    retry: {max_attempts: 7}\n"))
    changed = nano("deploy", "apply", "--nats-url", nats_url, cwd=folder)
    out = lines(changed)
    assert "consumer NANO_HELLO/record: updated" in out  # max_deliver follows max_attempts
    assert "consumer NANO_HELLO/greet: unchanged" in out
    assert any(line.startswith("table hello") and line.endswith(": updated") for line in out)
    assert out[-1] == f"{nats_url}: 0 created, 2 updated, 3 unchanged"

    ready = nano("deploy", "probe", "--steps", "hello.greet", "--nats-url", nats_url, cwd=folder)
    assert ready.returncode == 0 and lines(ready) == ["ok"], ready.stderr
    everything = nano("deploy", "probe", "--nats-url", nats_url, cwd=folder)
    assert everything.returncode == 0, everything.stderr
    missing = nano("deploy", "probe", "--steps", "hello.nope", "--nats-url", nats_url, cwd=folder)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"error: not ready: no step hello.nope in the routing tables on {nats_url}"
    )


def test_probe_before_apply_is_not_ready(nats_url: str, tmp_path: Path) -> None:
    result = nano("deploy", "probe", "--nats-url", nats_url, cwd=project(tmp_path))
    assert result.returncode == 1
    assert "no routing tables" in result.stderr and "Traceback" not in result.stderr


def test_apply_and_probe_without_nats_say_so_in_one_line(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    for args in (("deploy", "apply"), ("deploy", "probe")):
        result = nano(
            *args, "--nats-url", url, cwd=project(tmp_path) if args[1] == "apply" else tmp_path
        )
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith(f"error: cannot reach NATS at {url}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
