"""Lineage: what a registered version carries to trace it back to its data, code and params, and
the view of it that ``imdb-mlops registry lineage`` prints."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imdb_mlops.modeling.pretrained import checkpoint_provenance
from imdb_mlops.registry.tracking import dvc_lock_hashes, git_commit
from imdb_mlops.registry.versions import get_version

EXPERIMENT_TAGS = ("git.dirty_code", "reproducible", "dvc.exp.name", "dvc.exp.baseline", "dvc.exp.ref")


def params_digest(settings: dict[str, Any]) -> str:
    """sha256 of the validated params (``Params.model_dump()``, canonical JSON): equal digests, equal settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def lineage_tags(
    digest: str,
    base_model: str,
    client: Any,
    run_id: str,
    test_metrics: dict[str, Any],
    onnx_report: dict[str, Any],
    settings: dict[str, Any],
    project_dir: Path = Path("."),
) -> dict[str, str]:
    """Everything needed to trace a classifier version back to its data, code and params, as tags."""
    run = client.get_run(run_id)
    tags = {
        "training_run_id": run_id,
        "git.commit": run.data.tags.get("mlflow.source.git.commit", "unknown"),
        "git.dirty": run.data.tags.get("git.dirty", "unknown"),
        **{key: run.data.tags[key] for key in EXPERIMENT_TAGS if key in run.data.tags},
        "register.git.commit": git_commit(project_dir)["mlflow.source.git.commit"],
        "params_digest": digest,
        "model.base": base_model,
        **{f"model.base.{k}": v for k, v in checkpoint_provenance(base_model).items()},
        "serving.variant": settings["variant"],
        "variants.shipped": ",".join(settings["shipped"]),
    }
    hashes = dvc_lock_hashes(("ingest", "tokenize", "train"), project_dir)
    tags.update({k: v for k, v in hashes.items() if k.startswith(("dvc.data/", "dvc.models/"))})
    for key in ("n", "accuracy", "f1", "roc_auc", "ece"):
        if key in test_metrics:
            tags[f"test.{key}"] = str(test_metrics[key])
    for name, variant in onnx_report.get("variants", {}).items():
        for key in ("accuracy", "accuracy_change", "lower_bound", "agreement", "probability_diff_p99"):
            if key in variant:
                tags[f"variant.{name}.{key}"] = f"{variant[key]:.6g}"
    return tags


def lineage(client: Any, name: str, ref: str) -> dict[str, Any]:
    """Where a version came from: tags, training run (params, git, datasets), aliases."""
    mv = get_version(client, name, ref)
    run_id = mv.tags.get("training_run_id") or mv.run_id
    info: dict[str, Any] = {
        "version": mv.version,
        "aliases": sorted(mv.aliases),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
        "source": mv.source,
        "training_run_id": run_id,
        "tags": dict(sorted(mv.tags.items())),
    }
    if run_id:
        run = client.get_run(run_id)
        info["experiment_id"] = run.info.experiment_id
        info["run_status"] = run.info.status
        info["params"] = dict(sorted(run.data.params.items()))
        info["datasets"] = [
            {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ]
    return info
