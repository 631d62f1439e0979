"""PNG figures for people who would rather look: training curves, confusion matrix, ROC,
precision-recall and calibration. Headless (Agg); each function writes one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from imdb_mlops.common.labels import LABELS


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curves(train_log: list[dict[str, Any]], validation_log: list[dict[str, Any]], path: Path) -> None:
    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=(13, 3.8))
    steps = [r["step"] for r in train_log if "loss" in r]
    ax_loss.plot(steps, [r["loss"] for r in train_log if "loss" in r], label="train loss")
    if validation_log:
        ax_loss.plot(
            [r["step"] for r in validation_log], [r["eval_loss"] for r in validation_log], "o-", label="validation loss"
        )
    ax_loss.set(xlabel="step", title="Loss")
    ax_loss.legend()
    ax_lr.plot(
        [r["step"] for r in train_log if "learning_rate" in r],
        [r["learning_rate"] for r in train_log if "learning_rate" in r],
    )
    ax_lr.set(xlabel="step", title="Learning rate")
    for key in ("eval_accuracy", "eval_f1"):
        ax_val.plot(
            [r["step"] for r in validation_log],
            [r.get(key) for r in validation_log],
            "o-",
            label=key.removeprefix("eval_"),
        )
    ax_val.set(xlabel="step", title="Validation", ylim=(0, 1))
    ax_val.legend()
    _save(fig, path)


def confusion_matrix_figure(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    image = ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        ax.text(j, i, f"{value:,}", ha="center", va="center", color=color)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test)")
    fig.colorbar(image, ax=ax)
    _save(fig, path)


def curve(
    x: np.ndarray, y: np.ndarray, path: Path, title: str, xlabel: str, ylabel: str, diagonal: bool = False
) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.plot(x, y, marker="o" if len(x) <= 20 else None)
    if diagonal:
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
    _save(fig, path)


def attention_heatmap(matrix: np.ndarray, tokens: list[str], path: Path, title: str) -> None:
    """Query (row) x key (column) attention weights, tokens on both axes (thinned past 60 tokens)."""
    n = len(tokens)
    size = min(14.0, 3.5 + 0.16 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9), aspect="equal")
    step = max(1, int(np.ceil(n / 60)))
    ticks = list(range(0, n, step))
    labels = [tokens[i] for i in ticks]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set(xlabel="key (attended to)", ylabel="query (attending)", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)


# curves[key] records -> one PNG each: (key, x field, y field, file, title, x label, y label, diagonal)
CURVES = (
    ("roc", "fpr", "tpr", "roc.png", "ROC (test)", "false positive rate", "true positive rate", True),
    ("pr", "recall", "precision", "precision_recall.png", "Precision-recall (test)", "recall", "precision", False),
    ("calibration", "mean_predicted", "fraction_positive", "calibration.png", "Calibration (test)",
     "mean predicted P(positive)", "fraction positive", True),
)  # fmt: skip


def evaluation_figures(
    folder: Path, probs: np.ndarray, labels: np.ndarray, curves: dict[str, list[dict[str, Any]]]
) -> None:
    """Confusion matrix, ROC, precision-recall and calibration PNGs into a new ``folder``."""
    from sklearn.metrics import confusion_matrix

    folder.mkdir(parents=True)
    predictions = (probs >= 0.5).astype(int)
    confusion_matrix_figure(
        confusion_matrix(labels, predictions, labels=[0, 1]), LABELS, folder / "confusion_matrix.png"
    )
    for key, x, y, name, title, xlabel, ylabel, diagonal in CURVES:
        records = curves[key]
        xs, ys = np.array([r[x] for r in records]), np.array([r[y] for r in records])
        curve(xs, ys, folder / name, title, xlabel, ylabel, diagonal=diagonal)
