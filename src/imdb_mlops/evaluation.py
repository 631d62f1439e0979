"""Evaluate stage: score the trained classifier on the test split.

Entry point: :func:`evaluate_model`. Metrics come from the `evaluate` module packaged in
``imdb_mlops/metrics`` (accuracy, precision, recall, F1, ROC-AUC, log loss, expected calibration
error), with bootstrap confidence intervals for accuracy and F1, and slices by review length and
star rating. Writes ``reports/metrics.json`` (DVC metrics), DVC plot data and PNG figures
(confusion matrix, ROC, precision-recall, calibration), the most confident mistakes
(``reports/errors.jsonl``), and logs all of it into the training run in MLflow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from imdb_mlops import figures
from imdb_mlops.config import EvaluateConfig, Params
from imdb_mlops.errors import PipelineError
from imdb_mlops.outputs import atomic_outputs, write_json
from imdb_mlops.tracking import log_dataset, read_run_file, setup_mlflow

METRICS_MODULE = Path(__file__).parent / "metrics" / "binary_classification"
LABEL_NAMES = ["negative", "positive"]
console = Console(stderr=True)


def evaluate_model(
    params: Params, model_dir: Path, tokenized_dir: Path, raw_dir: Path, reports_dir: Path
) -> dict[str, Any]:
    """Run the stage; returns the metrics written to ``reports_dir/metrics.json``."""
    from datasets import load_from_disk

    cfg = params.evaluate
    model, tokenizer = load_trained(model_dir)
    test = load_from_disk(str(tokenized_dir))["test"]
    raw_test = pd.read_parquet(raw_dir / "test.parquet")
    if len(raw_test) != len(test):
        raise PipelineError(f"{raw_dir / 'test.parquet'}: {len(raw_test)} rows but {tokenized_dir}/test has {len(test)}; re-run dvc repro")
    probs = predict_positive(model, tokenizer, test["input_ids"], cfg.batch_size)
    labels = np.asarray(test["label"])
    ratings = np.asarray(test["rating"]) if "rating" in test.column_names else None
    metrics = compute_metrics(probs, labels, np.asarray(test["n_tokens"]), ratings, cfg, params.seed)
    mistakes = confident_mistakes(raw_test, probs, labels, np.asarray(test["n_tokens"]), cfg.top_errors)

    paths = {
        "metrics": reports_dir / "metrics.json",
        "errors": reports_dir / "errors.jsonl",
        "confusion": reports_dir / "plots" / "confusion.json",
        "roc": reports_dir / "plots" / "roc.json",
        "pr": reports_dir / "plots" / "precision_recall.json",
        "calibration": reports_dir / "plots" / "calibration.json",
        "figures": reports_dir / "figures" / "evaluation",
    }
    curves = plot_data(probs, labels, cfg.calibration_bins)
    with atomic_outputs(*paths.values()) as staged:
        tmp = dict(zip(paths, staged, strict=True))
        write_json(tmp["metrics"], metrics)
        for name in ("confusion", "roc", "pr", "calibration"):
            write_json(tmp[name], curves[name])
        write_figures(tmp["figures"], probs, labels, curves)
        attention_of_mistakes(model_dir, mistakes[: cfg.attention_examples], params, tmp["figures"])
        tmp["errors"].write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in mistakes), encoding="utf-8")
    log_to_mlflow(params, reports_dir, paths, metrics, raw_dir)
    print_report(metrics)
    return metrics


def load_trained(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise PipelineError(f"{model_dir}: no trained model (config.json missing); run the train stage first")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{model_dir}: cannot load the trained model: {str(exc).splitlines()[0][:200]}") from None
    return model.eval(), tokenizer


def predict_positive(model: Any, tokenizer: Any, input_ids: list[list[int]], batch_size: int) -> np.ndarray:
    """P(positive) per review; batches of similar length, dynamically padded."""
    import torch
    from rich.progress import track

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    order = np.argsort([len(ids) for ids in input_ids], kind="stable")
    probs = np.empty(len(input_ids), dtype=np.float64)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for batch in track(batches, description="Predicting test reviews", console=console, transient=True):
            padded = tokenizer.pad({"input_ids": [input_ids[i] for i in batch]}, return_tensors="pt").to(device)
            logits = model(**padded).logits.float()
            probs[batch] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
    return probs


def compute_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    n_tokens: np.ndarray,
    ratings: np.ndarray | None,
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    import evaluate

    metric = evaluate.load(str(METRICS_MODULE))
    predictions = (probs >= 0.5).astype(int)
    overall = metric.compute(
        predictions=predictions, references=labels, prediction_scores=probs, n_bins=cfg.calibration_bins
    )
    result: dict[str, Any] = {"n": len(labels), **{k: round(v, 5) for k, v in overall.items()}}
    result["ci"] = bootstrap_intervals(predictions, labels, cfg.bootstrap_samples, cfg.confidence_level, seed)
    edges = [0, *cfg.length_buckets, math.inf]
    by_length = {}
    for low, high in zip(edges, edges[1:], strict=False):
        mask = (n_tokens > low) & (n_tokens <= high)
        name = f"{low + 1}-{high}" if high != math.inf else f">{low}"
        by_length[name] = _slice(predictions, labels, mask)
    result["slices"] = {"length_tokens": by_length}
    if ratings is not None and (ratings > 0).any():
        result["slices"]["rating"] = {
            str(int(r)): _slice(predictions, labels, ratings == r) for r in sorted(set(ratings.tolist())) if r > 0
        }
    return result


def _slice(predictions: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    n = int(mask.sum())
    accuracy = round(float((predictions[mask] == labels[mask]).mean()), 5) if n else None
    return {"n": n, "accuracy": accuracy}


def bootstrap_intervals(
    predictions: np.ndarray, labels: np.ndarray, samples: int, level: float, seed: int
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals of accuracy and F1 (resampling reviews with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    alpha = (1 - level) / 2
    accuracy, f1 = np.empty(samples), np.empty(samples)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        p, y = predictions[idx], labels[idx]
        tp = ((p == 1) & (y == 1)).sum(axis=1)
        fp = ((p == 1) & (y == 0)).sum(axis=1)
        fn = ((p == 0) & (y == 1)).sum(axis=1)
        accuracy[start:stop] = (p == y).mean(axis=1)
        f1[start:stop] = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(tp)), where=(2 * tp + fp + fn) > 0)
    return {
        name: {"low": round(float(np.quantile(values, alpha)), 5), "high": round(float(np.quantile(values, 1 - alpha)), 5)}
        for name, values in (("accuracy", accuracy), ("f1", f1))
    }


def confident_mistakes(raw: pd.DataFrame, probs: np.ndarray, labels: np.ndarray, n_tokens: np.ndarray, k: int) -> list[dict[str, Any]]:
    predictions = (probs >= 0.5).astype(int)
    confidence = np.where(predictions == 1, probs, 1 - probs)
    wrong = np.flatnonzero(predictions != labels)
    top = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    rows = []
    for i in top:
        row = {
            "index": int(i),
            "label": LABEL_NAMES[labels[i]],
            "predicted": LABEL_NAMES[predictions[i]],
            "confidence": round(float(confidence[i]), 5),
            "n_tokens": int(n_tokens[i]),
            "text": raw["text"].iloc[i],
        }
        if "rating" in raw.columns:
            row["rating"] = int(raw["rating"].iloc[i])
        rows.append(row)
    return rows


def attention_of_mistakes(model_dir: Path, mistakes: list[dict[str, Any]], params: Params, folder: Path) -> None:
    """For each of ``mistakes``: ``attention_mistake_<k>.png`` (last layer, mean over heads) in
    ``folder`` and the tokens ``[CLS]`` attended to most, added to the mistake's record."""
    from imdb_mlops import figures
    from imdb_mlops.explain import attend, cls_attention, load_explainable, top_tokens

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
        figures.attention_heatmap(attended.attentions[last].mean(axis=0), attended.tokens, folder / f"attention_mistake_{rank}.png", title)
        mistake["cls_attention_top"] = top_tokens(attended, cls_attention(attended, last), 8)
        mistake["attention_figure"] = f"figures/evaluation/attention_mistake_{rank}.png"


def plot_data(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict[str, list[dict[str, Any]]]:
    """Records for DVC's plot templates (confusion, ROC, precision-recall, calibration)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    predictions = (probs >= 0.5).astype(int)
    confusion = [{"actual": LABEL_NAMES[a], "predicted": LABEL_NAMES[p]} for a, p in zip(labels, predictions, strict=True)]
    fpr, tpr, _ = roc_curve(labels, probs)
    precision, recall, _ = precision_recall_curve(labels, probs)
    frac_pos, mean_pred = calibration_curve(labels, probs, n_bins=bins, strategy="uniform")
    return {
        "confusion": confusion,
        "roc": [{"fpr": round(float(x), 5), "tpr": round(float(y), 5)} for x, y in _thin(fpr, tpr)],
        "pr": [{"recall": round(float(x), 5), "precision": round(float(y), 5)} for x, y in _thin(recall, precision)],
        "calibration": [
            {"mean_predicted": round(float(x), 5), "fraction_positive": round(float(y), 5)}
            for x, y in zip(mean_pred, frac_pos, strict=True)
        ],
    }


def _thin(x: np.ndarray, y: np.ndarray, points: int = 200) -> list[tuple[float, float]]:
    keep = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).astype(int))
    return list(zip(x[keep], y[keep], strict=True))


def write_figures(folder: Path, probs: np.ndarray, labels: np.ndarray, curves: dict[str, list[dict[str, Any]]]) -> None:
    from sklearn.metrics import confusion_matrix

    folder.mkdir(parents=True)
    predictions = (probs >= 0.5).astype(int)
    figures.confusion_matrix(confusion_matrix(labels, predictions, labels=[0, 1]), LABEL_NAMES, folder / "confusion_matrix.png")
    roc, pr, cal = curves["roc"], curves["pr"], curves["calibration"]
    figures.curve(np.array([r["fpr"] for r in roc]), np.array([r["tpr"] for r in roc]), folder / "roc.png", "ROC (test)", "false positive rate", "true positive rate", diagonal=True)
    figures.curve(np.array([r["recall"] for r in pr]), np.array([r["precision"] for r in pr]), folder / "precision_recall.png", "Precision-recall (test)", "recall", "precision")
    figures.curve(np.array([r["mean_predicted"] for r in cal]), np.array([r["fraction_positive"] for r in cal]), folder / "calibration.png", "Calibration (test)", "mean predicted P(positive)", "fraction positive", diagonal=True)


def log_to_mlflow(params: Params, reports_dir: Path, paths: dict[str, Path], metrics: dict[str, Any], raw_dir: Path) -> None:
    """Log into the training run named by reports/train_run.json."""
    import mlflow


    run_info = read_run_file(reports_dir / "train_run.json")
    setup_mlflow(params)
    try:
        run = mlflow.start_run(run_id=run_info["run_id"])
    except mlflow.exceptions.MlflowException:
        raise PipelineError(
            f"{reports_dir / 'train_run.json'}: MLflow run {run_info['run_id']} not found in the tracking store"
        ) from None
    with run:
        flat = {f"test_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        for name, interval in metrics["ci"].items():
            flat[f"test_{name}_ci_low"], flat[f"test_{name}_ci_high"] = interval["low"], interval["high"]
        for family, slices in metrics["slices"].items():
            for bucket, values in slices.items():
                if values["accuracy"] is None:
                    continue
                flat[f"test_acc_{family}_{bucket.replace('>', 'gt').replace('-', '_')}"] = values["accuracy"]
        mlflow.log_metrics(flat)
        mlflow.log_artifact(str(paths["metrics"]), "evaluation")
        mlflow.log_artifact(str(paths["errors"]), "evaluation")
        mlflow.log_artifacts(str(paths["figures"]), "figures/evaluation")
        log_dataset(params, raw_dir / "test.parquet", "test", context="testing")


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
