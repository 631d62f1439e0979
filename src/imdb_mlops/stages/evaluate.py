"""Evaluate stage: score the trained classifier on the test split.

Entry point: :func:`evaluate`. Steps: **read** the trained model and the test split; **compute**
P(positive) per review and the metrics (:mod:`imdb_mlops.modeling.metrics`: accuracy, precision,
recall, F1, ROC-AUC, log loss, expected calibration error, bootstrap intervals of accuracy and F1,
slices by review length and star rating), the plot records and the most confident mistakes;
**write** ``reports/metrics.json`` (DVC metrics), DVC plot data, PNG figures (confusion matrix, ROC,
precision-recall, calibration, attention of the mistakes) and ``reports/errors.jsonl``, together;
**log** all of it into the training run in MLflow; **print** the metrics tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, refuse_foreign_targets, write_json, write_jsonl
from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import Params
from imdb_mlops.data.splits import read_split
from imdb_mlops.modeling.classifier import load_trained_classifier, predict_positive
from imdb_mlops.modeling.metrics import compute_metrics, confident_mistakes, plot_data
from imdb_mlops.registry.tracking import log_dataset, reopen_run
from imdb_mlops.reporting import figures

console = Console(stderr=True)


def evaluate(params: Params, model_dir: Path, tokenized_dir: Path, raw_dir: Path, reports_dir: Path) -> dict[str, Any]:
    """Run the stage; returns the metrics written to ``reports_dir/metrics.json``."""
    paths = {
        "metrics": reports_dir / "metrics.json",
        "errors": reports_dir / "errors.jsonl",
        "confusion": reports_dir / "plots" / "confusion.json",
        "roc": reports_dir / "plots" / "roc.json",
        "pr": reports_dir / "plots" / "precision_recall.json",
        "calibration": reports_dir / "plots" / "calibration.json",
        "figures": reports_dir / "figures" / "evaluation",
    }
    refuse_foreign_targets(*paths.values(), owner="evaluate")
    from datasets import load_from_disk

    cfg = params.evaluate
    # --- read
    model, tokenizer = load_trained_classifier(model_dir)
    test = load_from_disk(str(tokenized_dir))["test"]
    raw_test = read_split(raw_dir, "test", columns=None)
    if len(raw_test) != len(test):
        raise PipelineError(
            f"{raw_dir / 'test.parquet'}: {len(raw_test)} rows but {tokenized_dir}/test has {len(test)}; re-run dvc repro"
        )
    # --- compute
    probs = predict_positive(model, tokenizer, test["input_ids"], cfg.batch_size, "test reviews")
    labels = np.asarray(test["label"])
    n_tokens = np.asarray(test["n_tokens"])
    ratings = np.asarray(test["rating"]) if "rating" in test.column_names else None
    metrics = compute_metrics(probs, labels, n_tokens, ratings, cfg, params.seed)
    mistakes = confident_mistakes(raw_test, probs, labels, n_tokens, cfg.top_errors)
    curves = plot_data(probs, labels, cfg.calibration_bins)

    # --- write
    with atomic_outputs(*paths.values(), owner="evaluate") as staged:
        tmp = dict(zip(paths, staged, strict=True))
        write_json(tmp["metrics"], metrics)
        for name in ("confusion", "roc", "pr", "calibration"):
            write_json(tmp[name], curves[name])
        figures.evaluation_figures(tmp["figures"], probs, labels, curves)
        attention_of_mistakes(model_dir, mistakes[: cfg.attention_examples], params, tmp["figures"])
        write_jsonl(tmp["errors"], mistakes)
    # --- log, print
    log_to_mlflow(params, reports_dir, paths, metrics, raw_dir)
    print_report(metrics)
    return metrics


def attention_of_mistakes(model_dir: Path, mistakes: list[dict[str, Any]], params: Params, folder: Path) -> None:
    """For each of ``mistakes``: ``attention_mistake_<k>.png`` (last layer, mean over heads) in
    ``folder`` and the tokens ``[CLS]`` attended to most, added to the mistake's record."""
    from imdb_mlops.modeling.explain import attend, cls_attention, load_explainable, top_tokens

    if not mistakes:
        return
    try:
        model, tokenizer = load_explainable(model_dir)
    except PipelineError as exc:  # e.g. an architecture explain does not read: metrics still count
        console.print(f"[yellow]No attention heatmaps:[/] {exc}")
        return
    for rank, mistake in enumerate(mistakes, start=1):
        attended = attend(model, tokenizer, mistake["text"], params.tokenize)
        last = attended.attentions.shape[0] - 1
        title = (f"mistake {rank}: {mistake['label']} review read as {mistake['predicted']} "
                 f"({mistake['confidence']:.2f}); layer {last}, mean of heads")  # fmt: skip
        figures.attention_heatmap(
            attended.attentions[last].mean(axis=0), attended.tokens, folder / f"attention_mistake_{rank}.png", title
        )
        mistake["cls_attention_top"] = top_tokens(attended, cls_attention(attended, last), 8)
        mistake["attention_figure"] = f"figures/evaluation/attention_mistake_{rank}.png"


def test_metrics_for_mlflow(metrics: dict[str, Any]) -> dict[str, float]:
    """``test_*`` metrics: the overall figures, interval bounds and slice accuracies."""
    flat = numeric_metrics({k: v for k, v in metrics.items() if isinstance(v, float)}, prefix="test_")
    for name, interval in metrics["ci"].items():
        flat[f"test_{name}_ci_low"], flat[f"test_{name}_ci_high"] = interval["low"], interval["high"]
    for family, slices in metrics["slices"].items():
        for bucket, values in slices.items():
            if values["accuracy"] is not None:
                flat[f"test_acc_{family}_{bucket.replace('>', 'gt').replace('-', '_')}"] = values["accuracy"]
    return flat


def log_to_mlflow(
    params: Params, reports_dir: Path, paths: dict[str, Path], metrics: dict[str, Any], raw_dir: Path
) -> None:
    """Log into the training run named by reports/train_run.json."""
    import mlflow

    with reopen_run(params.tracking, reports_dir / "train_run.json"):
        mlflow.log_metrics(test_metrics_for_mlflow(metrics))
        mlflow.log_artifact(str(paths["metrics"]), "evaluation")
        mlflow.log_artifact(str(paths["errors"]), "evaluation")
        mlflow.log_artifacts(str(paths["figures"]), "figures/evaluation")
        log_dataset(params.data.source, raw_dir / "test.parquet", "test", context="testing")


def print_report(metrics: dict[str, Any]) -> None:
    table = Table(title=f"Test metrics ({metrics['n']:,} reviews)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("CI (bootstrap)", justify="right")
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece"):
        ci = metrics["ci"].get(key)
        table.add_row(key, f"{metrics[key]:.4f}", f"{ci['low']:.4f} - {ci['high']:.4f}" if ci else "")
    console.print(table)
    slices = Table(title="Accuracy by review length (tokens)")
    slices.add_column("length")
    slices.add_column("n", justify="right")
    slices.add_column("accuracy", justify="right")
    for bucket, values in metrics["slices"]["length_tokens"].items():
        accuracy = "-" if values["accuracy"] is None else f"{values['accuracy']:.4f}"
        slices.add_row(bucket, f"{values['n']:,}", accuracy)
    console.print(slices)
