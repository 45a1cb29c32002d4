"""The debugging commands as real processes: `nano tail` sees executions started after it,
`--json` outputs parse, `purge` asks for confirmation, and bad input or a server that is
not there gets one line, never a traceback."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.processes import Background
from tests.e2e.test_cli import HELLO, describe, free_port, nano

ONE_LINE = "error: "


def one_line_error(result: object, *words: str) -> None:
    shown = describe(result)  # type: ignore[arg-type]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.returncode != 0, shown  # type: ignore[attr-defined]
    assert err.startswith(ONE_LINE) and "\n" not in err, shown
    assert "Traceback" not in err, shown
    for word in words:
        assert word in err, shown


@pytest.mark.parametrize(
    "args",
    [
        ["trace", "x1"],
        ["dlq", "list"],
        ["status"],
        ["replay", "hello", "--seq", "1..2"],
        ["tail"],
        ["dlq", "retry", "--all"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_no_server_is_one_line(tmp_path: Path, args: list[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    one_line_error(nano(*args, "--nats-url", url, cwd=tmp_path), "cannot reach NATS", url)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["replay"], ["say what to replay"]),
        (["replay", "hello", "--seq", "5..2"], ["ends before it starts"]),
        (["replay", "hello", "--since", "yesterday"], ["is not a time"]),
        (["replay", "--from-step", "greet"], ["say what to replay"]),
        (["replay", "--since", "1h"], ["needs the workflow"]),
        (["dlq", "retry"], ["say which dead letters"]),
        (["trace", "bad.id"], ["invalid execution id"]),
        (["tail", "--outcome", "weird"], ["unknown outcome weird"]),
        (["graph", str(HELLO), "--format", "gif"], ["unknown graph format"]),
        (["graph", str(HELLO), "--format", "png"], ["a PNG needs a file"]),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    one_line_error(nano(*args, cwd=tmp_path), *words)


@pytest.mark.slow
def test_tail_status_trace_and_purge_on_a_running_project(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    up = Background(["up", "--port", "0"], tmp_path)
    tail: Background | None = None
    try:
        up.wait_for_line("ready:")
        earlier = nano("publish", "hello", '{"name": "Bo"}', "--wait", cwd=tmp_path)
        assert earlier.returncode == 0, describe(earlier)
        tail = Background(["tail", "hello", "--json", "--count", "4"], tmp_path)
        deadline = time.monotonic() + 30
        while not any("tailing" in line for line in tail.stderr):
            assert time.monotonic() < deadline and tail.proc.poll() is None, tail.output()
            time.sleep(0.05)
        later = nano("publish", "hello", '{"name": "Ada"}', "--execution", "later-1", cwd=tmp_path)
        assert later.returncode == 0, describe(later)
        assert tail.wait(30) == 0, tail.output()
        events = [json.loads(line) for line in tail.stdout]
        assert [e["execution"] for e in events] == ["later-1"] * 4
        assert [(e["step"], e["to"], e["outcome"]) for e in events] == [
            ("trigger", "_start", "started"),
            ("normalize", "greet", "ok"),
            ("greet", "record", "ok"),
            ("record", "_done", "done"),
        ]

        got = nano("trace", "later-1", "--json", cwd=tmp_path)
        assert got.returncode == 0, describe(got)
        trace = json.loads(got.stdout)
        assert trace["status"] == "succeeded"
        assert [s["step"] for s in trace["steps"]] == ["normalize", "greet", "record"]

        got = nano("status", "--json", cwd=tmp_path)
        assert got.returncode == 0, describe(got)
        (wf,) = json.loads(got.stdout)["workflows"]
        assert wf["workflow"] == "hello" and wf["messages"] >= 8
        assert [c["step"] for c in wf["steps"]] == ["normalize", "greet", "record"]
        assert all(c["pulling"] >= 1 for c in wf["steps"]), wf  # nano up pulls every step

        # Past the client's schema check, straight to the trigger subject: the host refuses it.
        bad = nano("publish", "nano.hello._start.bad-1", '{"name": 7}', cwd=tmp_path)
        assert bad.returncode == 0, describe(bad)
        waited = nano("publish", "hello", "--execution", "bad-1", "--wait", cwd=tmp_path)
        assert waited.returncode != 0, describe(waited)
        listed = json.loads(nano("dlq", "list", "--json", cwd=tmp_path).stdout)
        assert len(listed) == 1 and listed[0]["step"] == "normalize"
        refused = nano("dlq", "purge", "--all", cwd=tmp_path)
        one_line_error(refused, "confirm with --yes")
        assert len(json.loads(nano("dlq", "list", "--json", cwd=tmp_path).stdout)) == 1
        purged = nano("dlq", "purge", "--all", "--yes", cwd=tmp_path)
        assert "deleted 1 dead letter(s)" in purged.stdout, describe(purged)
        assert json.loads(nano("dlq", "list", "--json", cwd=tmp_path).stdout) == []
    finally:
        if tail is not None:
            tail.close()
        up.close()


def test_every_debugging_option_has_a_description() -> None:
    import typer.main

    from nanoservice.cli import app

    group = typer.main.get_command(app)
    commands = {n: group.commands[n] for n in ("trace", "replay", "tail", "status", "graph")}  # type: ignore[attr-defined]
    dlq = group.commands["dlq"]  # type: ignore[attr-defined]
    commands.update({f"dlq {n}": c for n, c in dlq.commands.items()})
    assert set(commands) >= {"dlq list", "dlq show", "dlq retry", "dlq purge"}
    missing = [
        f"nano {name} {param.name}"
        for name, command in commands.items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, missing
