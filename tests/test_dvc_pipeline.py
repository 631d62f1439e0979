"""`dvc repro` of ingest -> tokenize in a fresh copy of the repository, with a real DVC remote."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from imdb_mlops.config import load_params
from tests.conftest import REPO_ROOT, make_project_copy, run, write_hub_layout

pytestmark = pytest.mark.slow


def set_params(project: Path, **dotted: object) -> None:
    path = project / "params.yaml"
    tree = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    load_params(path)  # the test's own params must be valid


def digests(*folders: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, minilm_path) -> Path:
    tmp = tmp_path_factory.mktemp("dvc")
    project = make_project_copy(tmp)
    source = write_hub_layout(tmp / "imdb")
    set_params(project, **{"data.source": str(source), "model.name": str(minilm_path), "tokenize.max_length": 64})
    proc = run(["dvc", "repro"], project)
    assert "Running stage 'ingest'" in proc.stdout and "Running stage 'tokenize'" in proc.stdout
    return project


def test_repro_writes_both_stages_and_locks_them(built):
    for split in ("train", "validation", "test"):
        assert (built / "data" / "raw" / f"{split}.parquet").is_file()
        assert (built / "data" / "tokenized" / split / "dataset_info.json").is_file()
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"ingest", "tokenize"}
    assert lock["stages"]["tokenize"]["params"]["params.yaml"]["tokenize"]["max_length"] == 64
    ignored = (built / "data" / ".gitignore").read_text().split()
    assert {"/raw", "/tokenized"} <= set(ignored)
    metrics = run(["dvc", "metrics", "show", "--json"], built).stdout
    assert "positive_share" in metrics and "truncated_share" in metrics


def test_up_to_date_pipeline_skips_every_stage(built):
    proc = run(["dvc", "repro"], built)
    assert "Stage 'ingest' didn't change, skipping" in proc.stdout
    assert "Stage 'tokenize' didn't change, skipping" in proc.stdout
    assert "Running stage" not in proc.stdout
    assert "up to date" in run(["dvc", "status"], built).stdout


def test_push_delete_pull_restores_identical_files(built):
    outputs = [built / "data" / "raw", built / "data" / "tokenized"]
    before = digests(*outputs)
    run(["dvc", "push"], built)
    for folder in outputs:
        shutil.rmtree(folder)
    shutil.rmtree(built / ".dvc" / "cache")
    run(["dvc", "pull"], built)
    assert digests(*outputs) == before


def test_changing_a_tokenize_param_reruns_tokenize_only(built):
    raw_before = digests(built / "data" / "raw")
    set_params(built, **{"tokenize.max_length": 32})
    proc = run(["dvc", "repro"], built)
    assert "Stage 'ingest' didn't change, skipping" in proc.stdout
    assert "Running stage 'tokenize'" in proc.stdout
    assert "Running stage 'ingest'" not in proc.stdout
    assert digests(built / "data" / "raw") == raw_before


def test_bad_params_fail_the_stage_before_any_work(project_copy):
    project = project_copy
    text = (project / "params.yaml").read_text().replace("  clean_html: true", "  clean_html: true\n  sorce: x")
    (project / "params.yaml").write_text(text)
    proc = run(["dvc", "repro"], project, check=False)
    assert proc.returncode != 0
    assert "error: params.yaml: data.sorce: unknown key (did you mean 'data.source'?)" in proc.stderr
    assert not (project / "data" / "raw").exists()


def test_repository_remote_is_a_local_folder_by_default():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "remote = storage" in config and "url = ../../imdb-mlops-dvc-storage" in config
