"""Register stage: the served classifier as a new version in the MLflow registry, then the gate.

Entry point: :func:`register`. Steps:

1. **read** the training run id, the export and evaluate reports, and decide the serving settings
   (:mod:`imdb_mlops.serving.settings`);
2. **log and register** (:func:`log_version`) the served model into the training run: an MLflow pyfunc written as code
   (:mod:`imdb_mlops.serving.classifier_model`; nothing pickled) over the shipped ONNX variants and
   the tokenizer, with the PyTorch checkpoint beside it, as a new version of ``registry.model_name``
   with a description and lineage tags (:mod:`imdb_mlops.registry.lineage`), alias ``challenger`` —
   unless a version of this training run already exists (idempotent: re-running adds no version;
   a version an interrupted run registered but did not gate is finished, not skipped);
3. **gate** (:mod:`imdb_mlops.registry.promotion`): the first version becomes ``champion``; later
   ones only when they beat it by the margin, significantly;
4. **write** ``reports/register.json`` and **print** the decision.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, read_json, refuse_foreign_targets, write_json
from imdb_mlops.config import Params
from imdb_mlops.modeling.runtimes import TORCH_VARIANTS
from imdb_mlops.registry.lineage import lineage_tags, params_digest
from imdb_mlops.registry.model_card import (
    CARD_ARTIFACT,
    as_description,
    classifier_card,
    portable_name,
    served_rule,
)
from imdb_mlops.registry.promotion import promotion_gate, record_decision
from imdb_mlops.registry.publish import ModelPackage, ensure_registered_model, log_and_register, pinned_requirements
from imdb_mlops.registry.tracking import portable_uri, read_run_file, setup_mlflow, tracking_uri
from imdb_mlops.registry.versions import CHALLENGER, CHAMPION, versions_of_run
from imdb_mlops.scoring.behaviour import behaviour_tags, run_behaviour_suite
from imdb_mlops.serving.settings import (
    CLASSIFIER_INPUT_EXAMPLE,
    CLASSIFIER_MODEL_FILE,
    CLASSIFIER_REQUIREMENTS,
    TORCH_REQUIREMENTS,
    classifier_settings,
    classifier_signature,
)

console = Console(stderr=True)
MODEL_DESCRIPTION = (
    "Binary sentiment of IMDB movie reviews. Versions are registered by the DVC register stage; "
    f"'{CHAMPION}' is served, '{CHALLENGER}' is the latest candidate."
)


def register(
    params: Params,
    onnx_dir: Path,
    model_dir: Path,
    raw_dir: Path,
    run_file: Path,
    metrics_path: Path,
    onnx_report_path: Path,
    report_path: Path,
    project_dir: Path = Path("."),
    data_report_path: Path = Path("reports/data.json"),
) -> dict[str, Any]:
    """Run the stage; returns (and writes to ``report_path``) the version and the gate decision."""
    refuse_foreign_targets(report_path, owner="register")
    from mlflow import MlflowClient

    cfg = params.registry
    run_id = read_run_file(run_file)["run_id"]
    onnx_report = read_json(onnx_report_path, "run the export stage first (dvc repro export)")
    test_metrics = read_json(metrics_path, "run the evaluate stage first (dvc repro evaluate)")
    settings = classifier_settings(cfg, params.tokenize, onnx_dir, onnx_report)
    setup_mlflow(params.tracking, project_dir)
    client = MlflowClient()
    refuse_pruned_trial(client, run_id, run_file)
    ensure_registered_model(client, cfg.model_name, MODEL_DESCRIPTION)

    existing = versions_of_run(client, cfg.model_name, run_id)
    if existing and "gate.action" in existing[0].tags:
        model_version = existing[0]
        console.print(
            f"Training run {run_id[:8]} is already registered as {cfg.model_name} version {model_version.version}; "
            "no new version."
        )
        decision: dict[str, Any] = {"action": "already_registered"}
    else:
        if existing:  # an earlier run stopped after registering, before its gate: finish that version
            model_version = existing[0]
            console.print(
                f"Finishing the registration of {cfg.model_name} version {model_version.version} (no gate yet)."
            )
            client.update_model_version(
                cfg.model_name, model_version.version, description=description(test_metrics, settings, params)
            )
        else:
            model_version = log_version(
                params, client, run_id, (onnx_dir, model_dir), settings, (test_metrics, onnx_report), project_dir
            )
        client.set_registered_model_alias(cfg.model_name, CHALLENGER, model_version.version)
        behaviour = check_behaviour(
            served_model(onnx_dir, model_dir, settings), client, (cfg.model_name, model_version.version), run_id
        )
        decision = promotion_gate(cfg, params.seed, client, model_version.version, raw_dir, behaviour)
        record_decision(client, cfg.model_name, model_version.version, run_id, decision)
        card_facts = {
            "metrics": test_metrics,
            "onnx": onnx_report,
            "settings": settings,
            "behaviour": behaviour,
            "gate": decision,
            "data": read_json(data_report_path, "run the ingest stage first (dvc repro ingest)"),
        }
        publish_card(params, client, model_version.version, run_id, card_facts, project_dir)

    report = {
        "model_name": cfg.model_name,
        "version": int(model_version.version),
        "run_id": run_id,
        "tracking_uri": portable_uri(tracking_uri(project_dir), project_dir),
        "aliases": sorted(client.get_model_version(cfg.model_name, model_version.version).aliases),
        "serving": {"variant": settings["variant"], "shipped": settings["shipped"]},
        "gate": decision,
    }
    with atomic_outputs(report_path, owner="register") as (tmp_report,):
        write_json(tmp_report, report)
    print_decision(report)
    return report


def refuse_pruned_trial(client: Any, run_id: str, run_file: Path) -> None:
    """A sweep trial stopped early by its pruner left a partial checkpoint: never registered."""
    if client.get_run(run_id).data.tags.get("sweep.pruned") == "true":
        raise PipelineError(
            f"{run_file}: run {run_id} is a pruned sweep trial (stopped early); its partial checkpoint is not registered"
        )


def log_version(
    params: Params,
    client: Any,
    run_id: str,
    package_dirs: tuple[Path, Path],
    settings: dict[str, Any],
    reports: tuple[dict[str, Any], dict[str, Any]],
    project_dir: Path,
) -> Any:
    """Log the served classifier (ONNX folder, PyTorch folder) into the training run and register it
    as a new version with its lineage tags and description; ``reports`` = (test metrics, ONNX report)."""
    cfg = params.registry
    onnx_dir, model_dir = package_dirs
    test_metrics, onnx_report = reports
    digest = params_digest(params.model_dump())
    tags = lineage_tags(digest, params.model.name, client, run_id, test_metrics, onnx_report, settings, project_dir)
    with tempfile.TemporaryDirectory(prefix="register-") as tmp:
        settings_path = Path(tmp) / "serving_config.json"
        settings_path.write_text(json.dumps(settings, indent=2))
        package = ModelPackage(
            name="model",
            python_model=CLASSIFIER_MODEL_FILE,
            artifacts=served_artifacts(onnx_dir, model_dir, settings_path, settings),
            signature=classifier_signature(),
            input_example=CLASSIFIER_INPUT_EXAMPLE,
            requirements=pinned_requirements(
                CLASSIFIER_REQUIREMENTS + (TORCH_REQUIREMENTS if torch_shipped(settings) else ())
            ),
            extra_artifacts={"pytorch_model": model_dir} if (model_dir / "config.json").exists() else {},
        )
        model_version = log_and_register(
            client, run_id, package, cfg.model_name, tags, description(test_metrics, settings, params)
        )
    console.print(f"Registered {cfg.model_name} version {model_version.version} (alias {CHALLENGER}).")
    return model_version


def torch_shipped(settings: dict[str, Any]) -> bool:
    return any(v in TORCH_VARIANTS for v in settings["shipped"])


def served_artifacts(onnx_dir: Path, model_dir: Path, settings_path: Path, settings: dict[str, Any]) -> dict[str, str]:
    """The pyfunc's artifacts: the ONNX folder and settings, and the PyTorch checkpoint when a
    PyTorch variant shipped (the served model then needs torch)."""
    artifacts = {"onnx": str(onnx_dir), "serving_config": str(settings_path)}
    if torch_shipped(settings):
        artifacts["pytorch"] = str(model_dir)
    return artifacts


def served_model(onnx_dir: Path, model_dir: Path, settings: dict[str, Any]) -> Any:
    """The registered pyfunc's model class loaded from the same files it was logged with (no
    download from the artifact store)."""
    from types import SimpleNamespace

    from imdb_mlops.serving.classifier_model import SentimentModel

    model = SentimentModel()
    with tempfile.TemporaryDirectory(prefix="register-") as tmp:
        settings_path = Path(tmp) / "serving_config.json"
        settings_path.write_text(json.dumps(settings))
        artifacts = served_artifacts(onnx_dir, model_dir, settings_path, settings)
        model.load_context(SimpleNamespace(artifacts=artifacts))
    return model


def check_behaviour(model: Any, client: Any, version_of: tuple[str, str], run_id: str) -> dict[str, Any]:
    """The behavioural suite on the version as served; pass rates as ``behaviour.*`` version tags
    and ``behaviour_*_pass_rate`` metrics of the training run."""
    import mlflow

    name, version = version_of
    result = run_behaviour_suite(model.positive_probabilities)
    for key, value in behaviour_tags(result).items():
        client.set_model_version_tag(name, version, key, value)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"behaviour_{f}_pass_rate": info["pass_rate"] for f, info in result["families"].items()})
        mlflow.log_dict(result, "behaviour.json")
    table = Table(title=f"Behavioural checks (suite version {result['suite_version']})")
    for column in ("family", "cases", "pass rate", "weakest test"):
        table.add_column(column, justify="left" if column in ("family", "weakest test") else "right")
    for family, info in result["families"].items():
        weakest = min(info["tests"].items(), key=lambda item: item[1])
        table.add_row(family, str(info["cases"]), f"{info['pass_rate']:.2%}", f"{weakest[0]} ({weakest[1]:.0%})")
    console.print(table)
    return result


def publish_card(
    params: Params, client: Any, version: str, run_id: str, facts: dict[str, Any], project_dir: Path
) -> None:
    """The version's model card: its description (rendered by the UI) and the run's ``model_card.md``."""
    import mlflow

    cfg = params.registry
    tags = client.get_model_version(cfg.model_name, version).tags
    card = classifier_card(
        {
            **facts,
            "model_name": cfg.model_name,
            "version": version,
            "run_id": run_id,
            "base_model": portable_name(params.model.name, project_dir),
            "data_source": portable_name(params.data.source, project_dir, "data.source"),
            "params_digest": tags.get("params_digest", ""),
            "git_commit": tags.get("git.commit", "unknown"),
            "hashes": {k.removeprefix("dvc."): v for k, v in tags.items() if k.startswith("dvc.data/")},
            "confidence_level": params.evaluate.confidence_level,
        }
    )
    client.update_model_version(cfg.model_name, version, description=as_description(card))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text(card, CARD_ARTIFACT)


def description(test_metrics: dict[str, Any], settings: dict[str, Any], params: Params) -> str:
    """The version's first description, until its model card replaces it."""
    figures = ", ".join(
        f"{key} {test_metrics[key]:.4f}" for key in ("accuracy", "f1", "roc_auc") if key in test_metrics
    )
    return (
        f"IMDB sentiment classifier fine-tuned from {portable_name(params.model.name)}. "
        f"Test ({test_metrics.get('n', '?')} reviews): "
        f"{figures}. Serves {served_rule(settings)}. Input: review texts; output: label, probability."
    )


def print_decision(report: dict[str, Any]) -> None:
    gate = report["gate"]
    table = Table(title=f"{report['model_name']} version {report['version']}: {gate['action'].replace('_', ' ')}")
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    for key in ("champion_accuracy", "challenger_accuracy", "accuracy_gain", "mcnemar_p_value", "n"):
        if key in gate:
            value = gate[key]
            table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else str(value))
    if "reason" in gate:
        table.add_row("reason", gate["reason"])
    table.add_row("aliases", ", ".join(report["aliases"]) or "-")
    table.add_row("serving", served_rule(report["serving"]))
    console.print(table)
