"""The one sampler: up to ``n`` rows, seeded, stratified by label where there are labels.

Used wherever the pipeline takes a subset of reviews: split caps at ingest, the promotion gate's
test reviews, the drift reference, the generator's training and perplexity reviews, the scratch
vocabulary's reviews and the unlabelled reviews.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def stratified_sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Up to ``n`` rows of ``frame``, seeded; stratified by ``label`` when that column exists and
    each label has at least 2 rows. The whole frame (same order) when ``n`` is None or >= its length."""
    if n is None or n >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split  # here: a command that samples nothing never pays for it

    labels = frame["label"] if "label" in frame.columns else None
    stratify = labels if labels is not None and labels.value_counts().min() >= 2 else None
    try:
        sample, _ = train_test_split(frame, train_size=n, stratify=stratify, random_state=seed)
    except ValueError:  # too few rows left out to hold every label (n close to len(frame)): plain sample
        sample, _ = train_test_split(frame, train_size=n, random_state=seed)
    return sample


def sample_texts(texts: Sequence[str], n: int | None, seed: int) -> list[str]:
    """Up to ``n`` of ``texts`` (no labels), seeded; in their original order."""
    frame = stratified_sample(pd.DataFrame({"text": list(texts)}), n, seed)
    return frame.sort_index()["text"].tolist()
