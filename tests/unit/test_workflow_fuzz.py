"""Mutated workflow files: the compiler reports problems with file and line, and never crashes.

Hypothesis takes the samples in ``workflows/*.yaml`` and ``tests/patterns/*.yaml`` and deletes,
duplicates, swaps and re-indents lines, replaces scalars, injects bytes and truncates; compiling
the result must raise nothing but :class:`WorkflowError`, each problem with a line and on one
line. The default suite runs a bounded number of examples; run many more on demand::

    NANO_FUZZ_EXAMPLES=5000 python -m pytest -q tests/unit/test_workflow_fuzz.py

A few fixed mutations also go through the real ``nano validate`` in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanoservice.errors import WorkflowError
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file
from tests.e2e.processes import NANO, nano_env

ROOT = Path(__file__).resolve().parents[2]


def _blocks(path: Path) -> list[bytes]:
    """A pattern file's workflows (``workflow:`` and ``also:``), as the text of workflow files."""
    found: list[list[str]] = []
    key = ""
    for line in path.read_text().splitlines(keepends=True):
        if line[:1].isalnum():
            key = line.split(":")[0]
            if key == "workflow":
                found.append([])
        elif key == "workflow" and line.strip():
            found[-1].append(line[2:])
        elif key == "also" and line.strip():
            if line.startswith("  - "):
                found.append([])
            found[-1].append(line[4:])
    return ["".join(lines).encode() for lines in found]


def _samples() -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in sorted((ROOT / "workflows").glob("*.yaml"))}
    for path in sorted((ROOT / "tests" / "patterns").glob("*.yaml")):
        for i, block in enumerate(_blocks(path)):
            found[f"{path.stem}.{i}"] = block
    return found


SAMPLES = _samples()
REGISTRY = Registry.discover([ROOT / "tests" / "patterns" / "nodes"])
EXAMPLES = int(os.environ.get("NANO_FUZZ_EXAMPLES", "200"))

SCALARS = [
    "", "~", "[]", "{}", "-1", "0", "1e999", ".nan", "yes", "2001-01-01", "=", "<<",
    "!!int 'x'", "!!float x", "!!binary '%'", "!!timestamp x", "!custom 1", "!!set {a}",
    "&a x", "*a", "'", '"', "[", "{", "}", ": :", "- x", "? x", "|", ">", "%YAML 1.1",
    "nano.x", "steps.nope.output", "_x", "a-b", "A_B", "x" * 70, "prev.", "[[[[[[[", "\t",
    "'\\x1b[2J'", '"\\n"', "{node: echo}", "[a, b]", "[" * 300, "{x: " * 100, "9" * 5000,
]  # fmt: skip
"""Replacements for a value: wrong types, YAML syntax and tags, names the compiler checks."""

Mutation = tuple[str, int, int, bytes]
mutations = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "indent", "scalar", "bytes", "truncate"]),
    st.integers(0, 10_000),
    st.integers(-8, 10_000),
    st.one_of(st.sampled_from([s.encode() for s in SCALARS]), st.binary(min_size=1, max_size=4)),
)


def mutate(data: bytes, mutation: Mutation) -> bytes:
    """Apply one mutation; positions are taken modulo the lines or bytes there are."""
    kind, a, b, payload = mutation
    lines = data.splitlines(keepends=True) or [b""]
    i, j = a % len(lines), abs(b) % len(lines)
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "indent":
        body = lines[i].lstrip(b" ")
        lines[i] = b" " * max(0, len(lines[i]) - len(body) + b) + body
    elif kind == "scalar":
        lines[i] = re.sub(rb"(:\s+|-\s+)\S.*?(\r?\n?)$", rb"\g<1>" + re.escape(payload) + rb"\2",
                          lines[i], count=1)  # fmt: skip
    elif kind == "bytes":
        at = a % (len(data) + 1)
        return data[:at] + payload + data[at:]
    else:
        return data[: a % (len(data) + 1)]
    return b"".join(lines)


def check(path: Path) -> None:
    """Compile ``path``: it compiles, or every problem has this file, a line and one line."""
    try:
        compile_file(path, REGISTRY).to_json()
    except WorkflowError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path) and problem.line is not None, problem
            assert "\n" not in str(problem) and "\r" not in str(problem), problem


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_samples_compile(tmp_path: Path, name: str) -> None:
    path = tmp_path / "sample.yaml"
    path.write_bytes(SAMPLES[name])
    compile_file(path, REGISTRY)  # a mutation of a broken sample would prove little


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sample=st.sampled_from(sorted(SAMPLES)),
    steps=st.lists(mutations, min_size=1, max_size=4),
)
def test_mutated_workflows_raise_only_workflow_errors(
    tmp_path: Path, sample: str, steps: list[Mutation]
) -> None:
    data = SAMPLES[sample]
    for mutation in steps:
        data = mutate(data, mutation)
    path = tmp_path / "mutated.yaml"
    path.write_bytes(data)
    check(path)


# --- the same, through `nano validate` as a user runs it ------------------------------------

HELLO = (ROOT / "workflows" / "hello.yaml").read_bytes()
FIXED = {
    "not_utf8.yaml": (HELLO.replace(b"Greets", b"Gr\xe9ets"), 5),
    "deep.yaml": (HELLO.replace(b"greeting: Hello", b"greeting: " + b"[" * 500), 12),
    "tag.yaml": (HELLO.replace(b"greeting: Hello", b"greeting: !custom Hello"), 12),
    "int.yaml": (HELLO.replace(b"greeting: Hello", b"greeting: !!int 'abc'"), 12),
    "control.yaml": (HELLO.replace(b"Hello", b"Hel\x07lo"), 12),
    "empty.yaml": (b"# nothing here yet\n", 1),
    "markup.yaml": (HELLO.replace(b"next: record", b"next: '[/red]'"), 23),
    "truncated.yaml": (HELLO[: HELLO.index(b"  record:")], 23),
}


def nano_validate(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NANO), "validate", *files],
        cwd=cwd,
        env=nano_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(FIXED))
def test_nano_validate_prints_one_line_per_problem_with_file_and_line(
    tmp_path: Path, name: str
) -> None:
    data, line = FIXED[name]
    (tmp_path / name).write_bytes(data)
    done = nano_validate(tmp_path, name)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    first, *_ = done.stderr.splitlines()
    assert first.startswith(f"error: {name}:{line}: "), done.stderr
    assert all(re.match(rf"error: {name}:\d+: ", ln) for ln in done.stderr.splitlines())


def test_nano_validate_reports_every_file_of_a_batch(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_bytes(HELLO.replace(b"name: hello", b"name: good"))
    for name in ("deep.yaml", "not_utf8.yaml", "tag.yaml"):
        (tmp_path / name).write_bytes(FIXED[name][0])
    done = nano_validate(tmp_path, "deep.yaml", "good.yaml", "not_utf8.yaml", "tag.yaml")
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["ok good.yaml: workflow 'good', 3 steps"]
    assert [ln.split(": ")[1] for ln in done.stderr.splitlines()] == [
        "deep.yaml:12",
        "not_utf8.yaml:5",
        "tag.yaml:12",
    ], done.stderr
