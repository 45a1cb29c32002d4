"""Reading ``nano.yaml``: the same safe YAML reader as workflows, problems with file:line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from nanoservice.deploy.config import DeployConfig
from nanoservice.errors import Problem, WorkflowError
from nanoservice.workflow.loader import Document, load_document, parse_document

__all__ = [
    "CONFIG_FILE",
    "DeployError",
    "LoadedConfig",
    "find_config",
    "load_config",
    "parse_config",
]

CONFIG_FILE = "nano.yaml"


class DeployError(WorkflowError):
    """A ``nano.yaml`` (or a grouping of it) that cannot be used; carries every problem."""


@dataclass(frozen=True)
class LoadedConfig:
    """A validated deployment file and where its parts are (for later problems)."""

    config: DeployConfig
    doc: Document = field(default_factory=lambda: Document(data={}, file=CONFIG_FILE))

    @property
    def file(self) -> str:
        return self.doc.file


def find_config(root: Path = Path()) -> Path | None:
    """``nano.yaml`` (or ``nano.yml``) in ``root``, if there is one."""
    for name in (CONFIG_FILE, "nano.yml"):
        if (root / name).is_file():
            return root / name
    return None


def load_config(path: Path | None) -> LoadedConfig:
    """Read and validate ``path``; ``None`` gives the defaults (monolith)."""
    if path is None:
        return LoadedConfig(DeployConfig())
    try:
        doc = load_document(path)
    except WorkflowError as exc:
        raise DeployError(exc.problems) from None
    return _validate(doc)


def parse_config(text: str, *, file: str = CONFIG_FILE) -> LoadedConfig:
    """Validate ``nano.yaml`` text (tests, docs)."""
    try:
        doc = parse_document(text, file=file)
    except WorkflowError as exc:
        raise DeployError(exc.problems) from None
    return _validate(doc)


def _validate(doc: Document) -> LoadedConfig:
    if not isinstance(doc.data, dict):
        raise DeployError([doc.problem("nano.yaml must be a mapping (e.g. `mode: micro`)")])
    try:
        return LoadedConfig(DeployConfig.model_validate(doc.data), doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            where = ".".join(str(p) for p in loc) or "nano.yaml"
            message = err.get("msg", "invalid").removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                message = "unknown field"
            elif err.get("type") == "missing":
                message = "field required"
            problems.append(doc.problem(f"{where}: {message}", loc))
        raise DeployError(_unique(problems)) from None


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out: list[Problem] = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out
