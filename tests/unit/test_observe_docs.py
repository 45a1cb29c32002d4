"""docs/observability.md shows what the code does: its commands' options exist, the banner
lines and log line are the ones the code prints, the metrics it lists (and shows in output)
are exported with those labels, the Prometheus config is the one in infra/. (Its python
example runs through tests/unit/test_docs.py, which runs every doc test function.)"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest
import typer.main
import yaml

from nanoservice.cli import app
from nanoservice.observe.host import HostObservability
from nanoservice.observe.logs import ContextFilter, JsonFormatter, LogContext
from tests.integration.observe_flow import samples
from tests.unit.test_dashboard import exported

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "observability.md").read_text()
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)
BLOCKS = [(kind, body) for kind, body in FENCE.findall(PAGE)]


def of(kind: str) -> list[str]:
    return [body for k, body in BLOCKS if k == kind]


def options(command: str) -> set[str]:
    group = typer.main.get_command(app)
    found = group.commands[command]  # type: ignore[attr-defined]
    return {name for param in found.params for name in param.opts}


def test_every_block_is_one_this_test_knows() -> None:
    assert sorted({kind for kind, _ in BLOCKS}) == ["console", "json", "python", "yaml"]


def test_nano_commands_use_options_that_exist() -> None:
    commands = [
        line[2:]
        for body in of("console")
        for line in body.splitlines()
        if line.startswith("$ ") and " nano " in f" {line[2:]} "
    ]
    assert commands
    for command in commands:
        words = shlex.split(command)
        words = words[words.index("nano") :]
        for word in words[2:]:
            if word.startswith("--"):
                assert word in options(words[1]), f"{command}: no option {word}"


def test_banner_lines_are_the_ones_the_host_prints(tmp_path: Path) -> None:
    (banner,) = [b for b in of("console") if b.startswith("$ nano up")]
    observe = HostObservability(metrics_port=0, sd_file=Path(".nano/prometheus/targets.json"))
    observe.sd_file = tmp_path / ".nano" / "prometheus" / "targets.json"
    try:
        printed = observe.start(None, [])
    finally:
        observe.server and observe.server.close()
    shown = [line for line in banner.splitlines() if line.startswith(("metrics", "targets"))]
    assert len(shown) == len(printed) == 2
    assert re.sub(r":\d+/", ":PORT/", printed[0]) == re.sub(r":\d+/", ":PORT/", shown[0])
    assert printed[1].replace(str(tmp_path) + "/", "") == shown[1]
    assert banner.rstrip().endswith("ready: 3 step consumers running; Ctrl-C to stop")


async def test_listed_and_shown_metrics_are_exported_with_their_labels() -> None:
    have = await exported()
    table = re.findall(r"^\| `(nano_\w+)` \| ([\w, ]+) \|", PAGE, re.M)
    assert len(table) == 15
    for name, labels in table:
        key = f"{name}_count" if name.endswith("_seconds") else name
        assert key in have, f"{name} is not exported"
        assert {label.strip() for label in labels.split(",")} == have[key] - {"le"}, name
    listed = {name for name, _ in table}
    ours = {n.removesuffix("_count") for n in have if n.startswith("nano_")}
    ours = {n for n in ours if not n.endswith(("_bucket", "_sum", "_created"))}
    assert ours == listed, "exported but not documented (or the reverse)"
    (curl,) = [b for b in of("console") if "curl" in b]
    output = "\n".join(line for line in curl.splitlines() if line.startswith("nano_"))
    for (name, labels), _ in samples(output + "\n").items():
        assert name in have and {k for k, _ in labels} <= have[name], name


def test_the_prometheus_config_is_the_one_in_infra() -> None:
    (shown,) = of("yaml")
    infra = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    assert yaml.safe_load(shown)["scrape_configs"] == infra["scrape_configs"]


async def test_the_log_line_has_the_fields_the_formatter_writes() -> None:
    (line,) = of("json")
    shown = json.loads(line)
    record = logging.LogRecord("nanoservice.sdk.node", logging.INFO, __file__, 1, "m", None, None)
    seen: dict[str, object] = {}

    async def handle(delivery: object) -> object:
        ContextFilter().filter(record)
        seen.update(json.loads(JsonFormatter().format(record)))
        return None

    class Step:
        workflow, name, prefix, start_prefix = "hello", "record", "nano.hello.record.", "x"

    class Delivery:
        subject, delivered, headers = "nano.hello.record.e1", 1, {}

    await LogContext().message(Step(), Delivery(), handle)  # type: ignore[arg-type]
    assert set(shown) - {"trace_id", "span_id"} == set(seen)
    assert (seen["workflow"], seen["step"], seen["execution"], seen["attempt"]) == (
        "hello",
        "record",
        "e1",
        1,
    )


@pytest.mark.parametrize("command", ["up", "host"])
def test_observability_options_on_host_commands(command: str) -> None:
    assert {"--metrics-port", "--log-format"} <= options(command)
