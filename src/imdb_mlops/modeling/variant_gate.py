"""The gate a faster variant of the classifier must pass to be shipped: a paired non-inferiority
test of its accuracy against the fp32 reference, plus a bound on how far its probabilities move.

Both models score the same ``n`` validation reviews. With ``b`` reviews the reference gets right
and the variant wrong, and ``c`` the other way round, the variant's accuracy change is
``d = (c - b) / n`` with paired variance ``((b + c) / n - d**2) / n``. The variant ships when the
one-sided lower confidence bound ``d - z * se`` (``z`` = 1.645 at 95%) lies above
``-max_accuracy_drop``: the data rule out, at that confidence, a loss as large as the margin.

Power: random flips of borderline reviews that cancel out (``b == c``, a share ``f`` of reviews)
give a bound of ``-z * sqrt(f / n)``, so such a variant ships while ``f < n * (margin / z)**2``:
up to 0.92% flips at n = 1,000, 2.3% at n = 2,500 (margin 0.5 points). A variant truly 0.5 points
worse ships at most 5% of the time, and one 1 point worse practically never at these sizes.

The probability bound catches a variant whose decisions survive but whose probabilities (what
users threshold and what the calibration figures describe) drift: the 99th percentile of
``|p_variant - p_reference|`` over the reviews must stay under ``max_probability_diff``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from imdb_mlops.common.numbers import softmax


@dataclass(frozen=True)
class GateRule:
    max_accuracy_drop: float = 0.005  # non-inferiority margin (0.005 = 0.5 points)
    confidence: float = 0.95  # of the one-sided lower bound
    max_probability_diff: float = 0.1  # bound on the 99th percentile of |p - p_reference|


@dataclass(frozen=True)
class GateFigures:
    n: int
    reference_accuracy: float
    accuracy: float
    accuracy_change: float  # variant - reference
    lower_bound: float  # one-sided lower confidence bound of the change
    reference_only_correct: int  # b: reviews the reference gets right and the variant wrong
    variant_only_correct: int  # c
    agreement: float
    probability_diff_p99: float
    probability_diff_max: float

    def as_dict(self) -> dict[str, float | int]:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


def positive_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of the positive class from two-column logits."""
    return softmax(np.asarray(logits, dtype=np.float64))[:, 1]


def noninferiority_bound(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    """(accuracy change, its one-sided lower confidence bound) from the discordant pair counts."""
    change = (c - b) / n
    variance = max((b + c) / n - change**2, 0.0) / n
    return change, change - NormalDist().inv_cdf(confidence) * math.sqrt(variance)


def gate_figures(
    reference_probability: np.ndarray, probability: np.ndarray, labels: np.ndarray, rule: GateRule
) -> GateFigures:
    """The paired figures of a variant's positive probabilities against the reference's (the lower
    bound at ``rule.confidence``); a review is called positive at probability >= 0.5."""
    reference_probability, probability = np.asarray(reference_probability), np.asarray(probability)
    labels = np.asarray(labels)
    if not len(labels) == len(probability) == len(reference_probability) > 0:
        raise ValueError("the gate needs the same, non-zero number of reference and variant predictions and labels")
    reference_pred, pred = reference_probability >= 0.5, probability >= 0.5
    reference_correct, correct = reference_pred == labels, pred == labels
    b = int((reference_correct & ~correct).sum())
    c = int((~reference_correct & correct).sum())
    n = len(labels)
    change, lower = noninferiority_bound(b, c, n, rule.confidence)
    diffs = np.abs(probability - reference_probability)
    return GateFigures(
        n=n,
        reference_accuracy=float(reference_correct.mean()),
        accuracy=float(correct.mean()),
        accuracy_change=change,
        lower_bound=lower,
        reference_only_correct=b,
        variant_only_correct=c,
        agreement=float((pred == reference_pred).mean()),
        probability_diff_p99=float(np.quantile(diffs, 0.99)),
        probability_diff_max=float(diffs.max()),
    )


def gate_failures(figures: GateFigures, rule: GateRule) -> list[str]:
    """What the variant misses, each with its figure; empty when it ships."""
    change, lower = figures.accuracy_change, figures.lower_bound
    failures = []
    if lower <= -rule.max_accuracy_drop:
        failures.append(
            f"accuracy change {change * 100:+.2f} points, {rule.confidence:.0%} lower bound {lower * 100:+.2f} "
            f"<= -{rule.max_accuracy_drop * 100:.2f} (n={figures.n}, {figures.reference_only_correct} lost, "
            f"{figures.variant_only_correct} gained)"
        )
    if figures.probability_diff_p99 > rule.max_probability_diff:
        failures.append(
            f"99th percentile |probability diff| {figures.probability_diff_p99:.3f} > {rule.max_probability_diff:.3f}"
        )
    return failures
