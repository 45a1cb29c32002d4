"""`nano up` starts the bridge and prints its address; `nano bridge` runs alone; both as
real processes answering real HTTP requests."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import NANO, Background, nano_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    # the sample, given the route README.md shows
    text = (REPO / "workflows" / "hello.yaml").read_text()
    text = text.replace("name: hello\n", "name: hello\ntrigger: {http: {path: /hello}}\n")
    (tmp_path / "workflows" / "hello.yaml").write_text(text)
    return tmp_path


@pytest.fixture
def up(project: Path) -> Iterator[Background]:
    proc = Background(["up", "--port", "0", "--http-port", "0"], cwd=project)
    try:
        proc.wait_for_line("ready:")
        yield proc
    finally:
        proc.close()


def _http_url(proc: Background) -> str:
    found = re.search(r"^HTTP\s+(http://\S+)", proc.output(), re.M)
    assert found, f"no HTTP line in the banner\n{proc.output()}"
    return found.group(1)


def test_up_prints_the_bridge_and_the_sample_answers_by_http(project: Path, up: Background) -> None:
    url = _http_url(up)
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/hello", json={"name": "Ada"})
        assert r.status_code == 200, r.text
        assert r.json() == {"message": "Hello, Ada!", "length": 3}
        bad = http.post("/hello", json={"name": ""})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "name"

    nats_url = (project / ".nano" / "url").read_text().strip()
    bridge = Background(
        ["bridge", "--nats-url", nats_url, "--http-port", "0", "--no-schedules"], cwd=project
    )
    try:
        bridge.wait_for_line("ready:")
        with httpx.Client(base_url=_http_url(bridge), timeout=30) as http:
            r = http.post("/hello", json={"name": "Bo"})
            assert r.json() == {"message": "Hello, Bo!", "length": 2}
            assert http.get("/openapi.json").json()["paths"]["/hello"]["post"]
        bridge.proc.send_signal(signal.SIGINT)
        assert bridge.wait() == 0, bridge.output()
    finally:
        bridge.close()
    up.proc.send_signal(signal.SIGINT)
    assert up.wait() == 0, up.output()


def test_up_serves_the_console_and_counts_the_bridges_requests(up: Background) -> None:
    """The console at the address `nano up` prints, on the bridge; the bridge's requests in
    the /metrics of the same process, by route template and status."""
    url = _http_url(up)
    console = re.search(r"^console\s+(http://\S+)", up.output(), re.M)
    assert console and console.group(1) == f"{url}/ui/", up.output()
    metrics = re.search(r"^metrics\s+(http://\S+)", up.output(), re.M)
    assert metrics, up.output()
    with httpx.Client(timeout=30) as http:
        page = http.get(console.group(1))
        assert page.status_code == 200 and "hello" in page.text, page.text[:500]
        assert http.post(f"{url}/hello", json={"name": "Ada"}).status_code == 200
        scraped = http.get(metrics.group(1)).text
    assert 'nano_http_requests_total{method="POST",route="/hello",status="200"} 1.0' in scraped, (
        scraped
    )


def test_bridge_without_nats_says_so_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(NANO), "bridge", "--nats-url", "nats://127.0.0.1:1", "--http-port", "0"],
        cwd=tmp_path,
        env=nano_env(),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot reach NATS at nats://127.0.0.1:1")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_up_with_a_taken_http_port_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(NANO), "up", "--port", "0", "--http-port", str(port)],
            cwd=project,
            env=nano_env(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: port {port} is taken (pass another --http-port)" in result.stderr
    assert "Traceback" not in result.stderr
