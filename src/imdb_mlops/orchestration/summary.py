"""The training flow's report: stages run or skipped, test metrics, the registered versions and
the gate's decision, as markdown for a Prefect artifact."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from imdb_mlops.common.files import read_json
from imdb_mlops.orchestration.dvc_stages import StageResult


def summary_markdown(
    project_dir: Path, results: list[StageResult], overrides: dict[str, Any], run_id: str | None
) -> str:
    """The flow's report: stages, test metrics, registered version and gate decision, MLflow run."""
    reports = project_dir / "reports"
    out = ["# IMDB training flow", "", "| stage | ran | seconds |", "|---|---|---|"]
    out += [f"| {r.stage} | {'ran' if r.ran else 'skipped (unchanged)'} | {r.seconds:.1f} |" for r in results]
    metrics = read_json(reports / "metrics.json")
    if metrics:
        out += ["", "## Test metrics", "", "| metric | value |", "|---|---|"]
        out += [f"| {k} | {metrics[k]:.4f} |" for k in ("accuracy", "f1", "roc_auc", "ece", "log_loss") if k in metrics]
        if "n" in metrics:
            out.append(f"| reviews | {metrics['n']} |")
    registered = read_json(reports / "register.json")
    if registered:
        gate = registered.get("gate", {})
        out += ["", "## Registry", ""]
        out.append(
            f"- **{registered['model_name']}** version **{registered['version']}** "
            f"(aliases: {', '.join(registered.get('aliases', [])) or 'none'})"
        )
        out.append(
            f"- gate: **{gate.get('action', '?').replace('_', ' ')}**"
            + (f" — {gate['reason']}" if "reason" in gate else "")
        )
        for key in ("champion_accuracy", "challenger_accuracy", "mcnemar_p_value", "n"):
            if key in gate:
                out.append(f"- {key.replace('_', ' ')}: {gate[key]}")
    generation = read_json(reports / "generation.json")
    if generation:
        out += ["", "## Review generator", ""]
        out.append(
            f"- **{generation.get('registered_model', '?')}** version **{generation.get('version', '?')}** "
            f"(aliases: {', '.join(generation.get('aliases', [])) or 'none'})"
        )
        out += [
            f"- {key.replace('_', ' ')}: {generation[key]}"
            for key in ("control_accuracy", "distinct_2", "perplexity_before", "perplexity_after")
            if key in generation
        ]
    out += ["", f"MLflow training run: `{run_id or 'none'}`"]
    if overrides:
        out += ["", "Overrides:", ""] + [f"- `{k}` = `{v}`" for k, v in overrides.items()]
    return "\n".join(out) + "\n"


def summary(results: list[StageResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
