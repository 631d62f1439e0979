"""`imdb-mlops reproduce`: a version made by `dvc exp run` rebuilt by a colleague from their own clone,
to identical metrics and model hashes, with their working tree left as it was."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import experiment_env, run, run_cli

# the project of test_dvc_pipeline.py (conftest's dvc_experiment), built once on the worker of group dvc
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="dvc")]
MODEL = "imdb-sentiment"


def _tree_state(repo: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def assert_no_machine_path(client, version, project: Path, machine_root: str) -> None:
    """Params, tags, descriptions, datasets, recorded files and reports name nothing under ``machine_root``
    (MLflow's own storage fields, artifact locations, are the store's business and are left out)."""
    run_id = version.tags["training_run_id"]
    run_ = client.get_run(run_id)
    texts = {
        "version description": version.description or "",
        "registered model description": client.get_registered_model(MODEL).description or "",
        **{f"version tag {k}": v for k, v in version.tags.items()},
        **{f"run param {k}": v for k, v in run_.data.params.items()},
        **{f"run tag {k}": v for k, v in run_.data.tags.items() if k != "mlflow.source.git.repoURL"},
        **{f"dataset {d.dataset.name}": d.dataset.source for d in run_.inputs.dataset_inputs},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("params.yaml", "dvc.lock", "tokenization.json"):
            texts[f"run artifact {name}"] = Path(client.download_artifacts(run_id, name, tmp)).read_text()
    for report in sorted((project / "reports").rglob("*.json*")):
        texts[str(report.relative_to(project))] = report.read_text()
    leaks = [where for where, text in texts.items() if machine_root in text or "site-packages" in text]
    assert leaks == []


def test_a_colleague_reproduces_a_version_from_its_experiment(dvc_experiment):
    """Version 1 was registered by ``dvc exp run --name tiny-exp``; other tests of the project may
    have added versions since, so the version is named, not the champion alias."""
    from mlflow import MlflowClient

    project = dvc_experiment
    root = project.parent  # the imdb data, the packaged checkpoints and the colleague's clone live here
    store = experiment_env(project)
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    version = client.get_model_version(MODEL, "1")
    run_tags = client.get_run(version.tags["training_run_id"]).data.tags
    assert run_tags["dvc.exp.name"] == "tiny-exp" and run_tags["dvc.exp.ref"].startswith("refs/exps/")
    assert run_tags["reproducible"] == "true", run_tags.get("git.dirty_code_files")
    assert version.tags["dvc.exp.name"] == "tiny-exp" and version.tags["reproducible"] == "true"

    assert_no_machine_path(client, version, project, str(root.resolve()))

    colleague = root / "colleague"
    run(["git", "clone", "-q", str(project), str(colleague)], root)
    missing = run_cli("reproduce", "1", cwd=colleague, **store)
    assert missing.returncode == 1
    assert "experiment 'tiny-exp'" in missing.stderr and "dvc exp pull <git remote> tiny-exp" in missing.stderr
    run(["dvc", "exp", "pull", "origin", "tiny-exp"], colleague, **store)

    dry = run_cli("reproduce", "1", "--dry", cwd=colleague, **store)
    assert dry.returncode == 0 and "dvc repro --force --no-run-cache evaluate" in dry.stdout
    run(["dvc", "remote", "add", "--local", "empty", str(root / "empty-remote")], colleague)
    before = _tree_state(colleague)
    no_data = run_cli("reproduce", "1", "--dvc-remote", "empty", cwd=colleague, **store)
    assert no_data.returncode == 1
    assert "reproduce: `dvc pull` failed" in no_data.stderr and "does DVC remote 'empty' hold" in no_data.stderr
    assert _tree_state(colleague) == before and list(root.glob(".colleague.reproduce-*")) == []
    versions = [v.version for v in client.search_model_versions(f"name='{MODEL}'")]
    proc = run_cli("reproduce", "1", cwd=colleague, **store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("identical")
    assert "models/classifier" in proc.stdout and "NO" not in proc.stdout  # same weights, same metrics
    assert _tree_state(colleague) == before  # nothing written into the colleague's checkout
    assert list(root.glob(".colleague.reproduce-*")) == []  # the rebuild's clone is gone
    assert [v.version for v in client.search_model_versions(f"name='{MODEL}'")] == versions  # read only
    recorded = json.loads(json.dumps(client.get_run(version.tags["training_run_id"]).data.metrics))
    assert recorded["test_accuracy"] > 0
