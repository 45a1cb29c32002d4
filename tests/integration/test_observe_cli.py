"""`nano up` as a user runs it, in a real process: it prints its /metrics URL and writes the
Prometheus file-SD file, a real scrape shows the execution, JSON log lines carry the ids,
console-exported spans form one trace; a taken metrics port is a one-line error."""

from __future__ import annotations

import json
import re
import shutil
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.processes import Background
from tests.e2e.test_cli import HELLO, describe, nano
from tests.integration.observe_flow import samples


def test_nano_up_metrics_logs_and_traces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    up = Background(
        ["up", "--port", "0", "--metrics-port", "0", "--log-format", "json"], cwd=tmp_path
    )
    try:
        url = up.wait_for_line("metrics ").split()[1]
        up.wait_for_line("ready:")
        targets = json.loads((tmp_path / ".nano" / "prometheus" / "targets.json").read_text())
        assert targets == [{"targets": [url.split("/")[2]], "labels": {"job": "nanoservice"}}], (
            up.output()
        )

        result = nano("publish", "hello", '{"name": "Ada"}', "--wait", cwd=tmp_path)
        assert result.returncode == 0, describe(result) + up.output()
        with urllib.request.urlopen(url, timeout=5) as response:
            got = samples(response.read().decode())
        for step in ("normalize", "greet", "record"):
            labels = frozenset({"workflow": "hello", "step": step, "outcome": "ok"}.items())
            assert got[("nano_step_outcomes_total", labels)] == 1, up.output()
        done = frozenset({"workflow": "hello"}.items())
        assert got[("nano_executions_completed_total", done)] == 1

        taken = url.split(":")[-1].split("/")[0]
        busy = nano("host", "--metrics-port", taken, cwd=tmp_path)
        assert busy.returncode == 1, describe(busy)
        assert busy.stderr.strip().count("\n") == 0, describe(busy)
        assert f"cannot serve metrics on 127.0.0.1:{taken}" in busy.stderr, describe(busy)

        up.proc.send_signal(signal.SIGINT)
        assert up.wait() == 0, up.output()
    finally:
        up.close()
    err = "".join(up.stderr)
    logs = [json.loads(line) for line in up.stderr if line.startswith('{"time"')]
    greeted = [line for line in logs if str(line["message"]).startswith("greeted")]
    assert len(greeted) == 1, err[-3000:]
    assert greeted[0]["workflow"] == "hello" and greeted[0]["step"] == "record"
    assert greeted[0]["attempt"] == 1 and greeted[0]["execution"]
    assert re.fullmatch(r"[0-9a-f]{32}", greeted[0]["trace_id"])
    names = re.findall(r'"name": "(hello\.\w+)"', err)
    assert sorted(names) == ["hello.greet", "hello.normalize", "hello.record"], err[-3000:]
    assert set(re.findall(r'"trace_id": "0x([0-9a-f]{32})"', err)) == {greeted[0]["trace_id"]}
