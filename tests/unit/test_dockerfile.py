"""deploy/Dockerfile, checked by parsing it (Docker is not available on these machines):
pinned base, non-root user, no secrets baked in, ``nano host`` as the entrypoint, a health
check that is a real command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from nanoservice.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
SECRET = re.compile(r"pass(word)?|secret|token|creds|credential|api_?key|private", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: comments dropped, continuations joined."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile, one line each (empty: fine)."""
    found: list[str] = []
    steps = instructions(text)
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    if not froms:
        return ["no FROM"]
    for i in froms:
        image = steps[i][1].split()[0]
        if not (PINNED.match(image) and (":" in image or "@" in image)) or image.endswith(
            ":latest"
        ):
            found.append(f"base image {image} is not pinned to an exact version or digest")
    final = steps[froms[-1] :]
    users = [arg for word, arg in final if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the final stage runs as root")
    for word, arg in steps:
        if word in ("ENV", "ARG") and SECRET.search(arg):
            found.append(f"{word} {arg}: a credential baked into the image")
        if word in ("COPY", "ADD") and re.search(r"\.(creds|nk|pem|key)\b|\.env\b", arg):
            found.append(f"{word} {arg}: copies a secret file")
    entry = [json.loads(arg) for word, arg in final if word == "ENTRYPOINT"]
    cmd = [json.loads(arg) for word, arg in final if word == "CMD"]
    if not entry or (entry[-1] + (cmd[-1] if cmd else []))[:2] != ["nano", "host"]:
        found.append("the entrypoint is not `nano host` (exec form)")
    if not any(word == "HEALTHCHECK" for word, _ in final):
        found.append("no HEALTHCHECK")
    return found


def test_the_dockerfile_has_the_essentials() -> None:
    assert problems(DOCKERFILE.read_text()) == []


def test_the_checks_catch_a_bad_dockerfile() -> None:
    bad = (
        "FROM python:latest\nENV NATS_PASSWORD=hunter2\nCOPY nats.creds /app/\n"
        'ENTRYPOINT ["python"]\n'
    )
    found = problems(bad)
    assert any("not pinned" in p for p in found)
    assert "the final stage runs as root" in found
    assert any("credential" in p for p in found) and any("secret file" in p for p in found)
    assert any("entrypoint" in p for p in found) and "no HEALTHCHECK" in found
    assert problems("FROM python:3.11.11-slim\nUSER 10001\nUSER root\n")[0] == (
        "the final stage runs as root"
    )


def test_the_health_check_runs_a_real_command() -> None:
    final = instructions(DOCKERFILE.read_text())
    (check,) = [arg for word, arg in final if word == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[0] == "nano"
    result = CliRunner().invoke(app, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_image_installs_the_project_and_its_workflows() -> None:
    text = DOCKERFILE.read_text()
    assert "pip install /src" in text and "/app/workflows" in text
    assert "WORKDIR /app" in text


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = set(IGNORE.read_text().split())
    assert {".git", ".venv", ".nano", "*.creds", ".env", "nats.env"} <= ignored
