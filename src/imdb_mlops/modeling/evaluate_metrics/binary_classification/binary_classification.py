"""Binary classification metrics as an `evaluate` module, loaded from this file (no hub).

Inputs: ``predictions`` (0/1 labels), ``references`` (0/1 labels) and
``prediction_scores`` (probability of the positive class). Returns accuracy, precision, recall,
F1 for the positive class, ROC-AUC, log loss and the expected calibration
error (ECE, equal-width bins over the predicted positive probability).
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels, 0 or 1.
    references (list of int): true labels, 0 or 1.
    prediction_scores (list of float): predicted probability of label 1.
    n_bins (int, optional): bins for the expected calibration error, default 15.
Returns:
    accuracy, precision, recall, f1, roc_auc, log_loss, ece.
"""


def expected_calibration_error(scores: np.ndarray, references: np.ndarray, n_bins: int) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of samples."""
    confidence = np.where(scores >= 0.5, scores, 1.0 - scores)
    correct = (scores >= 0.5).astype(int) == references
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BinaryClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int32"),
                    "references": datasets.Value("int32"),
                    "prediction_scores": datasets.Value("float64"),
                }
            ),
        )

    def _compute(self, predictions, references, prediction_scores, n_bins=15):
        predictions, references = np.asarray(predictions), np.asarray(references)
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, average="binary", pos_label=1, zero_division=0
        )
        result = {
            "accuracy": float(accuracy_score(references, predictions)),
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
        }
        scores = np.asarray(prediction_scores, dtype=float)
        both_classes = len(np.unique(references)) == 2
        result["roc_auc"] = float(roc_auc_score(references, scores)) if both_classes else float("nan")
        result["log_loss"] = float(log_loss(references, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))
        result["ece"] = expected_calibration_error(scores, references, n_bins)
        return result
