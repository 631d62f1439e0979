"""The behavioural suite: the shipped suite loads and expands; pass rates follow from the model's
answers (a keyword model passes what keywords can, fails negation); bad suites are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.scoring.behaviour import (
    behaviour_tags,
    expand,
    failing_families,
    load_suite,
    run_behaviour_suite,
    suite_texts,
)

GOOD = {"great", "wonderful", "brilliant", "excellent", "moving", "delightful", "recommend", "enjoyed", "loved", "best"}
BAD = {"terrible", "awful", "boring", "dreadful", "dull", "lifeless", "waste", "hated", "worst", "weak"}


def keyword_model(texts: list[str]) -> np.ndarray:
    """Positive probability from counting sentiment words: no grasp of negation."""
    scores = []
    for text in texts:
        words = [w.strip(".,;!").lower() for w in text.split()]
        good, bad = sum(w in GOOD for w in words), sum(w in BAD for w in words)
        scores.append(1 / (1 + np.exp(-(good - bad))))
    return np.array(scores)


def test_the_shipped_suite_expands_into_every_family():
    suite = load_suite()
    cases = suite_texts(suite)
    assert suite.version == 1
    assert len(cases["mft"]) >= 50 and len(cases["invariance"]) >= 30 and len(cases["directional"]) >= 30
    assert expand("A {good} {thing}.", suite.lexicons, 3) == ["A great movie.", "A great film.", "A great story."]
    names = {text.split()[0] for text in cases["invariance"][0][1]}
    assert names == set(suite.lexicons["name"])  # one case: every name, the rest fixed


def test_pass_rates_follow_the_models_answers():
    result = run_behaviour_suite(keyword_model)
    mft = result["families"]["mft"]
    assert mft["tests"]["plain positive"] == 1.0 and mft["tests"]["plain negative"] == 1.0
    assert mft["tests"]["negated positive"] == 0.0  # "not great" still counts "great"
    assert result["families"]["invariance"]["pass_rate"] == 1.0  # names carry no sentiment words
    assert result["families"]["directional"]["pass_rate"] == 1.0
    assert any(("negated" not in f and "expected negative" in f) or "not" in f for f in mft["failures"])
    assert behaviour_tags(result)["behaviour.mft"] == f"{mft['pass_rate']:.4f}"
    assert failing_families(result, 0.9) == [f"mft {mft['pass_rate']:.2f}"]
    assert failing_families(result, None) == []


def test_a_model_that_always_says_positive_fails_minimum_functionality_and_direction():
    result = run_behaviour_suite(lambda texts: np.full(len(texts), 0.9))
    families = result["families"]
    assert 0.3 < families["mft"]["pass_rate"] < 0.7  # right on the positive half only
    assert families["invariance"]["pass_rate"] == 1.0 and families["directional"]["pass_rate"] == 1.0
    flipping = run_behaviour_suite(lambda texts: np.array([0.9 if len(t) % 2 else 0.1 for t in texts]))
    assert flipping["families"]["invariance"]["pass_rate"] < 1.0


def test_a_bad_suite_is_a_clear_error(tmp_path):
    bad = tmp_path / "suite.yaml"
    bad.write_text("version: 1\nlexicons: {x: [a]}\nmft: [{name: n, template: '{y}', label: positive}]\n"
                   "invariance: []\ndirectional: []\n")  # fmt: skip
    with pytest.raises(PipelineError, match=r"suite.yaml: template '\{y\}' uses \{y\}, which no lexicon defines"):
        load_suite(bad)
    bad.write_text(
        "version: 1\nlexicons: {}\nmft: [{name: n, template: t, label: neutral}]\ninvariance: []\ndirectional: []\n"
    )
    with pytest.raises(PipelineError, match=r"suite.yaml: not a usable behaviour suite"):
        load_suite(bad)
