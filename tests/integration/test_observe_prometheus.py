"""The files in infra/ with a real Prometheus (skipped where no `prometheus` binary is
installed; Debian: `apt-get install prometheus`): it finds `nano up` through the file-SD
file, scrapes every step, and every dashboard query is valid PromQL that returns the
workflow's series."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from nanoservice.nats.local_server import free_port
from tests.e2e.processes import Background
from tests.e2e.test_cli import HELLO, describe, nano
from tests.unit.test_dashboard import DASHBOARD, queries

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary installed")


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a bad query: 400 with the error
        body = json.loads(exc.read())
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_finds_scrapes_and_answers_every_dashboard_query(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    shutil.copy(HELLO, tmp_path / "workflows" / "hello.yaml")
    shutil.copytree(REPO / "infra" / "prometheus", tmp_path / "infra" / "prometheus")
    config = tmp_path / "infra" / "prometheus" / "prometheus.yml"  # scrape faster, that is all
    config.write_text(config.read_text().replace("scrape_interval: 5s", "scrape_interval: 1s"))
    up = Background(["up", "--port", "0", "--metrics-port", "0"], cwd=tmp_path)
    port = free_port()
    assert PROMETHEUS is not None
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            "--config.file=infra/prometheus/prometheus.yml",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        up.wait_for_line("ready:")
        result = nano("publish", "hello", '{"name": "Ada"}', "--wait", cwd=tmp_path)
        assert result.returncode == 0, describe(result) + up.output()
        steps: set[str] = set()
        deadline = time.monotonic() + 40  # the file-SD file is read, then scraped
        while time.monotonic() < deadline and len(steps) < 3:
            time.sleep(1)
            try:
                found = query(base, 'nano_step_messages_total{workflow="hello"}')
            except OSError:  # Prometheus not listening yet
                continue
            steps = {series["metric"]["step"] for series in found}
        assert steps == {"normalize", "greet", "record"}, up.output()
        dashboard = json.loads(DASHBOARD.read_text())
        for expr in queries(dashboard):
            if expr.startswith("label_values("):  # Grafana's, not PromQL: the label API
                with urllib.request.urlopen(f"{base}/api/v1/label/workflow/values") as r:
                    assert "hello" in json.loads(r.read())["data"]
                continue
            grafana = expr.replace("$__rate_interval", "1m").replace("$workflow", ".*")
            query(base, grafana)  # valid PromQL (a bad one fails with its error)
        rate = 'sum by (workflow, step) (rate(nano_step_messages_total{workflow=~".*"}[1m]))'
        rated: set[str] = set()
        deadline = time.monotonic() + 30  # a rate needs two scrapes of the series
        while time.monotonic() < deadline and rated != steps:
            rated = {series["metric"]["step"] for series in query(base, rate)}
            time.sleep(1)
        assert rated == steps
    finally:
        prometheus.terminate()
        prometheus.wait(20)
        up.close()
