"""The promotion gate of the register stage: the first version becomes ``champion``; a later one
is scored against the champion on the same test reviews and, with ``registry.promotion: auto``,
takes ``champion`` only when :func:`~imdb_mlops.modeling.gate.gate_decision` says it passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import Params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.splits import read_split
from imdb_mlops.modeling.gate import gate_decision
from imdb_mlops.registry.aliases import current_champion, set_champion
from imdb_mlops.registry.predict import predict_labels

console = Console(stderr=True)


def gate_reviews(raw_dir: Path, samples: int | None, seed: int) -> tuple[list[str], np.ndarray]:
    """The test reviews both models are scored on: all, or a seeded stratified sample."""
    frame = stratified_sample(read_split(raw_dir, "test"), samples, seed)
    return frame["text"].tolist(), frame["label"].to_numpy()


def promotion_gate(params: Params, client: Any, challenger: str, raw_dir: Path) -> dict[str, Any]:
    """Decide whether ``champion`` moves to the new version; move it when it should."""
    cfg = params.registry
    champion = current_champion(client, cfg.model_name)
    if champion is None:
        set_champion(client, cfg.model_name, challenger, reason="first registered version")
        return {"action": "promoted", "reason": "first registered version", "champion": int(challenger)}
    texts, labels = gate_reviews(raw_dir, cfg.gate_samples, params.seed)
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
        set_champion(client, cfg.model_name, challenger, reason=decision["reason"])
        decision["action"] = "promoted"
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
