"""The console in a real browser: headless Chromium (Debian's), driven by Playwright.

As a user would: ``nano up`` and ``nano console`` in one folder (real processes), the
execution list open in the browser, an execution published with ``nano publish``; its row
appears live (server-sent events) and turns ``succeeded``; its trace opens from the link;
the screenshot of the trace is checked not to be blank (against a blank page's, in the same
run). Every request the browser makes goes to the console itself.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import NANO, Background, nano_env

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 15_000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (Debian package `chromium`)"
)


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB(A) PNG, unfiltered (no image library)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (
                    line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def looks_rendered(png: bytes) -> bool:
    """More than a few colours, and over 2% of the pixels differ from the commonest one."""
    width, _, rows = pixels(png)
    channels = len(rows[0]) // width
    counts: dict[bytes, int] = {}
    for row in rows[::4]:
        for x in range(0, width * channels, channels * 4):
            colour = row[x : x + 3]
            counts[colour] = counts.get(colour, 0) + 1
    total = sum(counts.values())
    return len(counts) > 8 and max(counts.values()) < 0.98 * total


def publish(folder: Path, execution: str, name: str) -> None:
    done = subprocess.run(
        [str(NANO), "publish", "hello", json.dumps({"name": name}), "--execution", execution],
        cwd=folder,
        env=nano_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    shutil.copy(REPO / "workflows" / "hello.yaml", tmp_path / "workflows" / "hello.yaml")
    return tmp_path


@pytest.fixture
def running(folder: Path) -> Iterator[str]:
    """``nano up`` and ``nano console`` in ``folder``; yields the console's address."""
    up = Background(["up", "--port", "0"], folder)
    console: Background | None = None
    try:
        up.wait_for_line("ready:")
        console = Background(["console", "--port", "0"], folder)
        yield console.wait_for_line("console ").split()[1]
    finally:
        if console is not None:
            console.close()
        up.close()


def test_a_live_execution_appears_and_its_trace_opens(folder: Path, running: str) -> None:
    sync_api: Any = pytest.importorskip("playwright.sync_api", reason="pip package playwright")
    expect = sync_api.expect
    address = running
    execution = "browser-1"
    name = "<img src=x onerror=alert(1)>"
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            requests: list[str] = []
            dialogs: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

            page.goto(address + "executions", timeout=WAIT_MS)
            expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)  # SSE open
            publish(folder, execution, name)
            row = page.locator(f"#x-hello-{execution}")
            row.locator(".outcome", has_text="succeeded").wait_for(timeout=WAIT_MS)

            row.get_by_role("link", name=execution).click()
            page.wait_for_url(f"**/executions/hello/{execution}", timeout=WAIT_MS)
            assert page.locator(".status strong").inner_text() == "succeeded"
            timeline = page.locator("table.timeline").inner_text()
            for step in ("normalize", "greet", "record"):
                assert step in timeline
            page.get_by_text("input", exact=True).click()  # the payload, on demand
            assert name in page.locator("pre.payload").first.inner_text()
            assert page.locator("img").count() == 0 and not dialogs
            shot = page.screenshot(full_page=True)

            blank = browser.new_page(viewport={"width": 1200, "height": 800})
            blank.goto("about:blank")
            assert not looks_rendered(blank.screenshot())  # the check can fail
            assert looks_rendered(shot)

            origin = address.split("/ui/")[0]
            assert requests and all(url.startswith(origin) for url in requests), requests

            # the step counters refresh by themselves (htmx, under the page's CSP)
            page.goto(address + "workflows/hello", timeout=WAIT_MS)
            done = page.locator("#step-rows tr").first.locator("td").nth(4)
            assert done.inner_text() == "1"
            publish(folder, "browser-2", "Ada")
            expect(done).to_have_text("2", timeout=WAIT_MS)
            assert not errors, errors

            static = browser.new_context(java_script_enabled=False).new_page()
            static.goto(address + "executions?outcome=succeeded", timeout=WAIT_MS)
            assert static.locator(f"#x-hello-{execution} .outcome").inner_text() == "succeeded"
        finally:
            browser.close()
