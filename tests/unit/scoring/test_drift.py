"""Drift statistics and reading new reviews, without a model."""

import numpy as np
import pytest

from imdb_mlops.config import ScoringConfig
from imdb_mlops.scoring.batch import read_new_reviews
from imdb_mlops.scoring.drift import length_shares, psi


def test_psi_is_zero_for_equal_distributions_and_grows_with_shift():
    edges = np.array([10, 20, 30])
    same = length_shares(np.array([5, 15, 25, 35] * 25), edges)
    assert psi(same, same) == pytest.approx(0.0)
    shifted = length_shares(np.array([35] * 100), edges)
    assert psi(same, shifted) > ScoringConfig().psi_warning


def test_a_plain_text_file_holds_one_review_per_line(tmp_path):
    (tmp_path / "reviews.txt").write_text("a great film\n\nan awful film\n")
    assert read_new_reviews(tmp_path / "reviews.txt", "text")["text"].tolist() == ["a great film", "an awful film"]
