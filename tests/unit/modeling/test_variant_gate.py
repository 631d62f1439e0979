"""The shipping gate of a faster variant: paired non-inferiority against the fp32 reference plus a
bound on probability differences, on constructed predictions."""

import numpy as np
import pytest

from imdb_mlops.modeling.variant_gate import GateRule, gate_failures, gate_figures, noninferiority_bound

N = 2500


def reference(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a reference that is right on 88% of them, with confident and borderline reviews."""
    labels = rng.integers(0, 2, N)
    correct = rng.random(N) < 0.88
    predicted = np.where(correct, labels, 1 - labels)
    confidence = np.where(rng.random(N) < 0.1, rng.uniform(0.5, 0.56, N), rng.uniform(0.8, 0.99, N))
    return labels, np.where(predicted == 1, confidence, 1 - confidence)


def test_a_variant_one_point_worse_is_refused():
    rng = np.random.default_rng(0)
    labels, p_ref = reference(rng)
    p = p_ref.copy()
    right = np.flatnonzero((p_ref >= 0.5) == labels)
    broken = rng.choice(right, N // 100, replace=False)  # 25 reviews turned wrong: exactly 1 point worse
    p[broken] = 1 - p[broken]
    rule = GateRule(max_probability_diff=1.0)  # the accuracy test alone must refuse it
    figures = gate_figures(p_ref, p, labels, rule)
    assert figures.accuracy_change == pytest.approx(-0.01)
    failures = gate_failures(figures, rule)
    assert len(failures) == 1 and failures[0].startswith("accuracy change -1.00 points")


def test_random_flips_on_borderline_reviews_at_equal_accuracy_ship():
    rng = np.random.default_rng(1)
    labels, p_ref = reference(rng)
    borderline = np.flatnonzero(np.abs(p_ref - 0.5) < 0.03)
    right = borderline[(p_ref[borderline] >= 0.5) == labels[borderline]]
    wrong = borderline[(p_ref[borderline] >= 0.5) != labels[borderline]]
    k = min(len(wrong), 15)  # 15 lost and 15 gained: 1.2% of reviews flip, accuracy unchanged
    flipped = np.concatenate([rng.choice(right, k, replace=False), rng.choice(wrong, k, replace=False)])
    p = p_ref + rng.normal(0, 0.005, N) * (np.abs(p_ref - 0.5) > 0.1)  # small noise on the confident ones
    p[flipped] = 1 - p_ref[flipped]  # just across 0.5
    figures = gate_figures(p_ref, np.clip(p, 0, 1), labels, GateRule())
    assert figures.accuracy_change == 0 and figures.agreement < 0.99
    assert gate_failures(figures, GateRule()) == []


def test_the_same_flips_on_too_few_reviews_are_refused():
    """Power: 2 lost and 2 gained among 100 reviews cannot rule out a 0.5-point loss."""
    change, lower = noninferiority_bound(b=2, c=2, n=100, confidence=0.95)
    assert change == 0 and lower < -0.005
    change, lower = noninferiority_bound(b=20, c=20, n=2500, confidence=0.95)
    assert lower > -0.005


def test_drifting_probabilities_are_refused_even_when_decisions_hold():
    rng = np.random.default_rng(2)
    labels, p_ref = reference(rng)
    p = np.where(p_ref >= 0.5, np.maximum(p_ref - 0.25, 0.5), np.minimum(p_ref + 0.25, 0.49))
    failures = gate_failures(gate_figures(p_ref, p, labels, GateRule()), GateRule())
    assert failures and "99th percentile |probability diff|" in failures[0]


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="same, non-zero number"):
        gate_figures(np.zeros(3), np.zeros(2), np.zeros(3), GateRule())
