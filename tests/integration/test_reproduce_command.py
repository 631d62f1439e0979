"""`imdb-mlops reproduce`: a version made by `dvc exp run` rebuilt by a colleague from their own clone,
to identical metrics and model hashes, with their working tree left as it was."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import make_project_copy, run, run_cli, save_tiny_distilbert, set_params, write_hub_layout

pytestmark = [pytest.mark.slow]
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


def install_tiny_checkpoint_package(site: Path, tokenizer_dir: Path) -> str:
    """A tiny classifier checkpoint shipped as an installed package (module, data folder, dist-info) in
    ``site``, as the packaged MiniLM is, but seconds to train and export: its ``pkg:`` name."""
    save_tiny_distilbert(site / "tiny_checkpoint_pkg" / "model", tokenizer_dir, classifier_labels=2)
    (site / "tiny_checkpoint_pkg" / "__init__.py").write_text("")
    info = site / "tiny_checkpoint_pkg-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-checkpoint-pkg\nVersion: 0.1.0\n")
    return "pkg:tiny_checkpoint_pkg/model"


def test_a_colleague_reproduces_the_champion_from_its_experiment(tmp_path, minilm_path):
    from mlflow import MlflowClient

    project = make_project_copy(tmp_path)
    write_hub_layout(tmp_path / "imdb")
    site = tmp_path / "site"  # on PYTHONPATH for every command below, as site-packages is
    packaged = install_tiny_checkpoint_package(site, minilm_path)
    set_params(  # as `exp-run --offline` writes them: a relative data path, the packaged checkpoint by name
        project,
        **{
            "data.source": "../imdb",
            "model.name": packaged,
            "tokenize.max_length": 64,
            "train.max_steps": 6,
            "train.eval_strategy": "steps",
            "train.eval_steps": 3,
            "train.logging_steps": 2,
            "train.learning_rate": 1e-3,
            "evaluate.bootstrap_samples": 100,
            "registry.behaviour_min_pass": None,  # six steps of training know little English
            # what this test does not look at, kept short (as in the other tiny pipelines)
            "tracking.system_metrics": False,
            "export.latency_samples": 8,
            "export.torch_bf16": False,
        },
    )
    run(["git", "commit", "-qam", "tiny params"], project)
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "PYTHONPATH": str(site)}
    run(["dvc", "exp", "run", "--name", "tiny-exp", "register"], project, **store)
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias(MODEL, "champion")
    run_tags = client.get_run(version.tags["training_run_id"]).data.tags
    assert run_tags["dvc.exp.name"] == "tiny-exp" and run_tags["dvc.exp.ref"].startswith("refs/exps/")
    assert run_tags["reproducible"] == "true", run_tags.get("git.dirty_code_files")
    assert version.tags["dvc.exp.name"] == "tiny-exp" and version.tags["reproducible"] == "true"

    assert_no_machine_path(client, version, project, str(tmp_path.resolve()))

    colleague = tmp_path / "colleague"
    run(["git", "clone", "-q", str(project), str(colleague)], tmp_path)
    missing = run_cli("reproduce", "champion", cwd=colleague, **store)
    assert missing.returncode == 1
    assert "experiment 'tiny-exp'" in missing.stderr and "dvc exp pull <git remote> tiny-exp" in missing.stderr
    run(["dvc", "exp", "pull", "origin", "tiny-exp"], colleague, **store)

    dry = run_cli("reproduce", "champion", "--dry", cwd=colleague, **store)
    assert dry.returncode == 0 and "dvc repro --force --no-run-cache evaluate" in dry.stdout
    run(["dvc", "remote", "add", "--local", "empty", str(tmp_path / "empty-remote")], colleague)
    before = _tree_state(colleague)
    no_data = run_cli("reproduce", "champion", "--dvc-remote", "empty", cwd=colleague, **store)
    assert no_data.returncode == 1
    assert "reproduce: `dvc pull` failed" in no_data.stderr and "does DVC remote 'empty' hold" in no_data.stderr
    assert _tree_state(colleague) == before and list(tmp_path.glob(".colleague.reproduce-*")) == []
    proc = run_cli("reproduce", "champion", cwd=colleague, **store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("identical")
    assert "models/classifier" in proc.stdout and "NO" not in proc.stdout  # same weights, same metrics
    assert _tree_state(colleague) == before  # nothing written into the colleague's checkout
    assert list(tmp_path.glob(".colleague.reproduce-*")) == []  # the rebuild's clone is gone
    assert [v.version for v in client.search_model_versions(f"name='{MODEL}'")] == [version.version]  # read only
    recorded = json.loads(json.dumps(client.get_run(version.tags["training_run_id"]).data.metrics))
    assert recorded["test_accuracy"] > 0
