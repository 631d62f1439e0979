"""The promotion gate's statistics: margin and McNemar's exact test on paired predictions."""

import numpy as np
import pytest

from imdb_mlops.config import RegistryConfig
from imdb_mlops.modeling.gate import gate_decision, mcnemar_p_value


def test_gate_needs_both_the_margin_and_significance():
    cfg = RegistryConfig(min_improvement=0.01, mcnemar_alpha=0.05)
    labels = np.array([1, 0] * 500)
    champion_pred = labels.copy()
    champion_pred[:200] = 1 - champion_pred[:200]  # 80% accurate
    better = labels.copy()
    better[:100] = 1 - better[:100]  # 90% accurate, right wherever the champion is
    decision = gate_decision(labels, better, champion_pred, cfg)
    assert decision["passes"] and decision["accuracy_gain"] == pytest.approx(0.1)
    assert decision["only_challenger_right"] == 100 and decision["only_champion_right"] == 0
    tiny_gain = champion_pred.copy()
    tiny_gain[:2] = labels[:2]  # +0.2 points: below the 1-point margin
    assert not gate_decision(labels, tiny_gain, champion_pred, cfg)["passes"]
    noisy = gate_decision(labels[:40], labels[:40] ^ (np.arange(40) < 3), labels[:40] ^ (np.arange(40) < 5), cfg)
    assert noisy["accuracy_gain"] == pytest.approx(0.05) and not noisy["passes"] and "McNemar" in noisy["reason"]


def test_mcnemar_exact_p_values():
    assert mcnemar_p_value(0, 0) == 1.0
    assert mcnemar_p_value(5, 5) == 1.0
    assert mcnemar_p_value(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar_p_value(0, 10) == mcnemar_p_value(10, 0)
