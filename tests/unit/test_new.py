"""Copying templates: renaming placeholders, refusing to overwrite, checking names."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanoservice.cli.new import NODE_PY, PROJECT, WORKFLOW, copy_template
from nanoservice.sdk.registry import Registry
from nanoservice.workflow.compiler import compile_file


def test_a_node_package_is_renamed_in_paths_identifiers_and_distribution(tmp_path: Path) -> None:
    copy_template(NODE_PY, "fraud_score", tmp_path / "pkg")
    init = (tmp_path / "pkg" / "nano_node_fraud_score" / "__init__.py").read_text()
    assert '@node("fraud_score"' in init
    assert "class FraudScoreConfig(BaseModel)" in init
    pyproject = (tmp_path / "pkg" / "pyproject.toml").read_text()
    assert 'name = "nano-node-fraud-score"' in pyproject
    assert 'fraud_score = "nano_node_fraud_score:fraud_score"' in pyproject
    assert (tmp_path / "pkg" / "tests" / "test_fraud_score.py").is_file()


def test_a_new_workflow_compiles_under_its_own_name(tmp_path: Path) -> None:
    target = tmp_path / "workflows" / "orders.yaml"
    assert copy_template(WORKFLOW, "orders", target) == 1
    assert compile_file(target, Registry.discover()).workflow == "orders"


def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty"):
        copy_template(PROJECT, "demo", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_existing_workflow_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "orders.yaml"
    target.write_text("mine")
    with pytest.raises(ValueError, match="exists already"):
        copy_template(WORKFLOW, "orders", target)
    assert target.read_text() == "mine"


@pytest.mark.parametrize(
    ("template", "name"),
    [(NODE_PY, "Fraud"), (NODE_PY, "fraud-score"), (PROJECT, "my app"), (WORKFLOW, "_x")],
)
def test_a_bad_name_is_refused_before_anything_is_written(
    tmp_path: Path, template: object, name: str
) -> None:
    with pytest.raises(ValueError, match="invalid name"):
        copy_template(template, name, tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_missing_templates_folder_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NANO_TEMPLATES"):
        copy_template(PROJECT, "demo", tmp_path / "out", root=tmp_path / "nowhere")


def test_the_project_template_ships_the_readme_sample_verbatim() -> None:
    root = Path(__file__).resolve().parents[2]
    template = (root / "templates" / "project" / "workflows" / "hello.yaml").read_text()
    assert template == (root / "workflows" / "hello.yaml").read_text()


def test_a_typescript_node_package_is_renamed_and_leaves_build_output_behind(
    tmp_path: Path,
) -> None:
    from nanoservice.cli.new import NODE_TS

    copy_template(NODE_TS, "fraud_score", tmp_path / "ts")
    package = (tmp_path / "ts" / "package.json").read_text()
    assert '"name": "nano-node-fraud-score"' in package
    source = (tmp_path / "ts" / "src" / "fraud_score.ts").read_text()
    assert 'name: "fraud_score"' in source and "FraudScoreConfig" in source
    assert not (tmp_path / "ts" / "node_modules").exists()
    assert not (tmp_path / "ts" / "dist").exists()
