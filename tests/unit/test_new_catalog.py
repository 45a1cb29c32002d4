"""The node catalog: installed nodes from real metadata files, local nodes read not imported."""

from __future__ import annotations

from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from nanoservice.errors import NanoError
from nanoservice.sdk.catalog import installed_nodes, local_nodes
from nanoservice.workflow.settings import load_settings


def dist(root: Path, name: str, nodes: dict[str, str]) -> PathDistribution:
    info = root / f"{name.replace('-', '_')}-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in nodes.items())
    (info / "entry_points.txt").write_text(f"[nanoservice.nodes]\n{lines}")
    return PathDistribution(info)


def test_one_name_from_two_distributions_is_an_error_naming_both(tmp_path: Path) -> None:
    dists = [
        dist(tmp_path, "nano-node-b", {"score": "b:score"}),
        dist(tmp_path, "nano-node-a", {"score": "a:score", "other": "a:other"}),
    ]
    with pytest.raises(NanoError) as caught:
        installed_nodes(dists=dists)
    assert str(caught.value) == (
        "node 'score' is declared by two installed distributions: nano-node-a 1.2.0 (a:score) "
        "and nano-node-b 1.2.0 (b:score); choose one in nano.yaml "
        "(prefer: {score: nano-node-a}) or uninstall one"
    )
    chosen = installed_nodes({"score": "nano_node_b"}, dists=dists)
    assert [(e.name, e.distribution, e.target) for e in chosen] == [
        ("other", "nano-node-a", "a:other"),
        ("score", "nano-node-b", "b:score"),
    ]


def test_local_nodes_are_found_without_running_their_modules(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        'raise SystemExit("imported!")\n'
        "@node('alpha', pure=True)\nasync def alpha(ctx, x):\n    '''Does alpha.'''\n"
        "class Beta(Node):\n    name = 'beta'\n"
    )
    (tmp_path / "_private.py").write_text("@node('hidden')\ndef h(ctx, x): ...\n")
    found = local_nodes(tmp_path)
    assert [(e.name, e.distribution, e.summary) for e in found] == [
        ("alpha", "local", "Does alpha."),
        ("beta", "local", ""),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prefer: [a\n", "nano.yaml:2: "),
        ("prefer: {a: 1}\n", "nano.yaml: prefer must map node names to distribution names"),
        ("- a\n", "nano.yaml: expected a mapping of settings (name, prefer)"),
    ],
)
def test_a_bad_nano_yaml_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("nano.yaml").write_text(text)
    with pytest.raises(NanoError) as caught:
        load_settings()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
