"""The promotion gate of the register stage: the first version becomes ``champion``; a later one
is scored against the champion on the same test reviews and, with ``registry.promotion: auto``,
takes ``champion`` only when :func:`~imdb_mlops.modeling.gate.gate_decision` says it passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import RegistryConfig
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.splits import read_split
from imdb_mlops.modeling.gate import gate_decision
from imdb_mlops.registry.aliases import current_champion, set_champion
from imdb_mlops.registry.predict import predict_labels
from imdb_mlops.scoring.behaviour import failing_families

console = Console(stderr=True)


def gate_reviews(raw_dir: Path, samples: int | None, seed: int) -> tuple[list[str], np.ndarray]:
    """The test reviews both models are scored on: all, or a seeded stratified sample."""
    frame = stratified_sample(read_split(raw_dir, "test"), samples, seed)
    return frame["text"].tolist(), frame["label"].to_numpy()


def promotion_gate(
    cfg: RegistryConfig,
    seed: int,
    client: Any,
    challenger: str,
    raw_dir: Path,
    behaviour: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decide whether ``champion`` moves to the new version; move it when it should. A version whose
    behavioural checks fall below ``registry.behaviour_min_pass`` is never promoted."""
    champion = current_champion(client, cfg.model_name)
    failing = failing_families(behaviour, cfg.behaviour_min_pass) if behaviour else []
    if failing:
        return {
            "action": "refused_behaviour",
            "passes": False,
            "reason": f"behavioural checks below registry.behaviour_min_pass {cfg.behaviour_min_pass}: "
            + ", ".join(failing),
            "champion": int(champion or 0),
        }
    if champion is None:
        reason = "first registered version"
        if set_champion(client, cfg.model_name, challenger, reason, "register-stage", None, check_expected=True):
            return {"action": "promoted", "reason": reason, "champion": int(challenger)}
        champion = current_champion(client, cfg.model_name)  # set by someone else meanwhile: gate against it
    texts, labels = gate_reviews(raw_dir, cfg.gate_samples, seed)
    console.print(
        f"Promotion gate: version {challenger} (challenger) vs {champion} (champion) on {len(texts):,} test reviews"
    )
    predicted = {
        which: predict_labels(f"models:/{cfg.model_name}/{v}", texts, cfg, f"version {v} ({which})")
        for which, v in (("challenger", challenger), ("champion", champion))
    }
    decision = gate_decision(labels, predicted["challenger"], predicted["champion"], cfg)
    decision["champion_before"] = int(champion)
    if decision["passes"] and cfg.promotion == "auto":
        moved = set_champion(
            client, cfg.model_name, challenger, decision["reason"], "register-stage", champion, check_expected=True
        )
        decision["action"] = "promoted" if moved else "champion_moved_during_gate"
        if not moved:
            decision["reason"] = (
                f"champion moved to version {current_champion(client, cfg.model_name)} while the gate compared "
                f"against version {champion}; the challenger was not promoted (run the register stage again)"
            )
    elif decision["passes"]:
        decision["action"] = "awaiting_manual_promotion"
    else:
        decision["action"] = "kept_champion"
    decision["champion"] = int(current_champion(client, cfg.model_name) or 0)
    return decision


def record_decision(client: Any, name: str, model_version: str, run_id: str, decision: dict[str, Any]) -> None:
    """The gate's decision as version tags, and as tags and ``gate_*`` metrics of the training run."""
    import mlflow

    tags = {f"gate.{k}": str(v) for k, v in decision.items() if k != "passes"}
    for key, value in tags.items():
        client.set_model_version_tag(name, model_version, key, value)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags({**tags, "registry.model": name, "registry.version": model_version})
        numbers = numeric_metrics(decision, prefix="gate_")
        if numbers:
            mlflow.log_metrics(numbers)
