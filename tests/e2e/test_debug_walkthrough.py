"""docs/debugging.md, run as written: its workflow and node files are written to a fresh
folder, `nano up` runs in it (restarted once the page shows the fixed node), and every
`$ nano ...` line of its console blocks runs as a real process whose output must match the
page. In expected output, ``<word>`` stands for one token (a time, an id, a duration) and
runs of spaces are one space; a line ``(exit N)`` says the command exits N (else 0).
Lines of standard error may be left out of the page; every line of standard output is shown.
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import pytest

from tests.e2e.processes import Background
from tests.e2e.test_cli import describe, nano

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "debugging.md"
FENCE = re.compile(r"```(yaml|python|console)\n(.*?)```", re.S)
FILE_LINE = re.compile(r"^# (\S+)\n")
PLACEHOLDER = re.compile(r"<[a-z][a-z-]*>")


def steps(block: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a console block."""
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found and line.strip():
            found[-1][1].append(line)
    return found


def pattern(line: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(" ".join(line.split()))
    return re.compile(r"\S+".join(re.escape(p) for p in parts) + "$")


def check(command: str, expected: list[str], cwd: Path) -> None:
    args = shlex.split(command)
    assert args[0] == "nano", f"docs/debugging.md runs only nano commands: {command}"
    code = 0
    if expected and (m := re.fullmatch(r"\(exit (\d+)\)", expected[-1].strip())):
        code, expected = int(m[1]), expected[:-1]
    result = nano(*args[1:], cwd=cwd, timeout=60)
    shown = f"$ {command}\n" + describe(result)
    assert result.returncode == code, shown
    out = [" ".join(x.split()) for x in result.stdout.splitlines() if x.strip()]
    err = [" ".join(x.split()) for x in result.stderr.splitlines() if x.strip()]
    lines = [(True, x) for x in out] + [(False, x) for x in err]
    at = 0
    for want in expected:
        regex = pattern(want)
        while at < len(lines) and not regex.match(lines[at][1]):
            assert not lines[at][0], f"stdout line not in the page: {lines[at][1]!r}\n{shown}"
            at += 1
        assert at < len(lines), f"page shows {want!r}; not printed (in this order)\n{shown}"
        at += 1
    unmatched = [x for is_out, x in lines[at:] if is_out]
    assert not unmatched, f"stdout lines not in the page: {unmatched}\n{shown}"


def start(cwd: Path) -> Background:
    up = Background(["up", "--port", "0"], cwd)
    up.wait_for_line("ready:")
    return up


def stop(up: Background) -> None:
    up.proc.send_signal(signal.SIGINT)
    assert up.wait() == 0, up.output()


@pytest.mark.slow
def test_the_debugging_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = FENCE.findall(DOC.read_text())
    assert [kind for kind, _ in blocks].count("console") >= 5
    up: Background | None = None
    ran: list[str] = []
    try:
        for kind, body in blocks:
            if kind in ("yaml", "python"):
                name = FILE_LINE.match(body)
                assert name, f"a {kind} block names its file on its first line: {body[:60]}"
                path = tmp_path / name[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
                if kind == "python":  # a node: (re)start `nano up` so it runs this version
                    if up is not None:
                        stop(up)
                    up = start(tmp_path)
                continue
            assert up is not None, "a console block before the files it needs"
            for command, expected in steps(body):
                check(command, expected, tmp_path)
                ran.append(command)
    finally:
        if up is not None:
            up.close()
    for needed in ("nano trace", "nano replay", "nano dlq retry", "nano dlq list", "--compare"):
        assert any(needed in c for c in ran), f"the walkthrough never runs {needed}"
