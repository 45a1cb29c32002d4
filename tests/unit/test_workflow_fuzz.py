"""Mutated workflow files: the compiler reports problems with file and line, and never crashes.

Hypothesis takes the samples in ``workflows/*.yaml`` and ``tests/patterns/*.yaml`` and deletes,
duplicates, swaps and re-indents lines, replaces scalars, injects bytes and truncates; compiling
the result must raise nothing but :class:`WorkflowError`, each problem with a line and on one
line. Another test first replaces one value of a sample with any JSON-shaped value (strings
with control characters and lone surrogates included). The default suite runs a bounded
number of examples; run many more on demand::

    NANO_FUZZ_EXAMPLES=5000 python -m pytest -q tests/unit/test_workflow_fuzz.py

A few fixed mutations also go through the real ``nano validate`` in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
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
EXAMPLES = int(os.environ.get("NANO_FUZZ_EXAMPLES", "150"))

SCALARS = [
    "", "~", "[]", "{}", "-1", "0", "1e999", ".nan", "yes", "2001-01-01", "=", "<<",
    "!!int 'x'", "!!float x", "!!binary '%'", "!!timestamp x", "!custom 1", "!!set {a}",
    "&a x", "*a", "'", '"', "[", "{", "}", ": :", "- x", "? x", "|", ">", "%YAML 1.1",
    "nano.x", "steps.nope.output", "_x", "a-b", "A_B", "x" * 70, "prev.", "[[[[[[[", "\t",
    "'\\x1b[2J'", '"\\n"', "{node: echo}", "[a, b]", "[" * 300, "{x: " * 100, "9" * 5000,
    '"\\ud800"', "'\u2028'",
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


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in parsed YAML: mapping values, list items, and the containers themselves."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += leaves(item, (*path, i))
    return found


def replace_value(data: bytes, index: int, value: Any) -> bytes:
    """The sample with one of its values (chosen by ``index``) replaced, dumped as YAML."""
    tree = yaml.safe_load(data)
    places = leaves(tree)[1:]
    *parent, last = places[index % len(places)]
    holder = tree
    for key in parent:
        holder = holder[key]
    holder[last] = value
    return yaml.safe_dump(tree, sort_keys=False).encode()


def check(path: Path) -> None:
    """Compile ``path``: it compiles, or every problem has this file, a line and one line."""
    try:
        compile_file(path, REGISTRY).to_json()
    except WorkflowError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path) and problem.line is not None, problem
            text = str(problem)
            assert "\n" not in text and "\r" not in text, problem
            text.encode("utf-8")  # printable: no lone surrogates


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


odd_text = st.text(st.characters(categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=3)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | odd_text
    | st.sampled_from(SCALARS),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sample=st.sampled_from(sorted(SAMPLES)),
    index=st.integers(0, 10_000),
    value=json_values,
)
def test_workflows_with_a_value_replaced_raise_only_workflow_errors(
    tmp_path: Path, sample: str, index: int, value: Any
) -> None:
    path = tmp_path / "replaced.yaml"
    path.write_bytes(replace_value(SAMPLES[sample], index, value))
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
    "surrogate.yaml": (HELLO.replace(b"greeting: Hello", b'greeting: "\\ud800"'), 12),
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


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One `nano validate` over a good file and every fixed mutation (each in its own file)."""
    folder = tmp_path_factory.mktemp("validate")
    (folder / "good.yaml").write_bytes(HELLO.replace(b"name: hello", b"name: good"))
    for name, (data, _) in FIXED.items():
        (folder / name).write_bytes(data)
    return nano_validate(folder, *sorted(FIXED), "good.yaml")


@pytest.mark.parametrize("name", sorted(FIXED))
def test_nano_validate_prints_one_line_per_problem_with_file_and_line(
    validated: subprocess.CompletedProcess[str], name: str
) -> None:
    _, line = FIXED[name]
    mine = [ln for ln in validated.stderr.splitlines() if ln.startswith(f"error: {name}:")]
    assert mine and mine[0].startswith(f"error: {name}:{line}: "), validated.stderr


def test_nano_validate_reports_every_file_of_a_batch(
    validated: subprocess.CompletedProcess[str],
) -> None:
    assert validated.returncode == 1 and "Traceback" not in validated.stderr, validated.stderr
    assert validated.stdout.splitlines() == ["ok good.yaml: workflow 'good', 3 steps"]
    lines = validated.stderr.splitlines()
    assert all(re.match(r"error: [a-z_0-9]+\.yaml:\d+: ", ln) for ln in lines), lines
    assert {ln.split(":")[1].strip() for ln in lines} == set(FIXED)
