"""Cutting new reviews into pieces (imdb_mlops.scoring.inputs) and the drift aggregates summed
over pieces (imdb_mlops.scoring.drift), without a model or Ray."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import ScoringConfig
from imdb_mlops.scoring.drift import drift_report, merge_aggregates, text_aggregates, unknown_counts
from imdb_mlops.scoring.inputs import plan_pieces, read_new_reviews, read_piece


def texts(n: int, start: int = 0) -> list[str]:
    return [f"review {i} " + "word " * (i % 7) for i in range(start, start + n)]


def test_pieces_follow_row_groups_lines_and_files_and_read_back_every_review_once(tmp_path):
    pd.DataFrame({"text": texts(100)}).to_parquet(tmp_path / "a.parquet", row_group_size=10)
    pd.DataFrame({"text": texts(25, 100)}).to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    pd.DataFrame({"text": texts(7, 125)}).to_csv(tmp_path / "c.csv", index=False)
    (tmp_path / "txt").mkdir()
    for i, text in enumerate(texts(5, 132)):
        (tmp_path / "txt" / f"{i}.txt").write_text(text)
    pieces = plan_pieces(tmp_path, "text", rows_per_part=20)
    assert [p.kind for p in pieces] == ["parquet"] * 5 + ["jsonl"] * 2 + ["csv", "txt"]
    assert [(p.start, p.stop) for p in pieces[:5]] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    read = pd.concat([read_piece(p, "text") for p in pieces], ignore_index=True)
    assert read["text"].tolist() == texts(137)
    assert plan_pieces(tmp_path, "text", 20) == pieces  # the same input gives the same pieces
    assert len({p.key("v1") for p in pieces}) == len(pieces) and pieces[0].key("v1") != pieces[0].key("v2")


def test_a_piece_key_changes_when_its_file_changes(tmp_path):
    pd.DataFrame({"text": texts(10)}).to_parquet(tmp_path / "a.parquet")
    before = plan_pieces(tmp_path, "text", 100)[0].key("v1")
    pd.DataFrame({"text": texts(11)}).to_parquet(tmp_path / "a.parquet")
    assert plan_pieces(tmp_path, "text", 100)[0].key("v1") != before


def test_bad_rows_are_named_by_their_row_in_the_file_not_in_the_piece(tmp_path):
    rows = [{"text": t} for t in texts(30)]
    rows[24] = {"text": 5}
    pd.DataFrame(rows).to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    pieces = plan_pieces(tmp_path / "r.jsonl", "text", rows_per_part=10)
    assert len(pieces) == 3
    read_piece(pieces[1], "text")
    with pytest.raises(PipelineError, match=r"r.jsonl: row 25: 'text' is not text \(5\)"):
        read_piece(pieces[2], "text")
    pd.DataFrame({"review": ["x"]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(PipelineError, match=r"x.parquet: no text column 'text' \(columns: review"):
        plan_pieces(tmp_path / "x.parquet", "text", 10)


def test_empty_reviews_are_dropped_and_an_all_empty_input_is_refused(tmp_path):
    (tmp_path / "r.txt").write_text("good\n  \n\nbad\n")
    assert read_new_reviews(tmp_path / "r.txt", "text")["text"].tolist() == ["good", "bad"]
    (tmp_path / "e.txt").write_text("\n \n")
    with pytest.raises(PipelineError, match="e.txt: no reviews found"):
        read_new_reviews(tmp_path / "e.txt", "text")


def word_tokenizer() -> Tokenizer:
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(["review", "word", "good", "bad"])}}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    return tokenizer


def test_drift_from_aggregates_of_pieces_equals_the_drift_of_the_whole_batch():
    rng = np.random.default_rng(0)
    batch = [" ".join(rng.choice(["review", "word", "zzz", "good"], size=rng.integers(1, 60))) for _ in range(301)]
    labels = rng.choice(["negative", "positive"], size=len(batch)).tolist()
    tokenizer = word_tokenizer()
    cuts = [0, 17, 100, 101, 250, 301]
    pieces = [text_aggregates(batch[a:b], labels[a:b], tokenizer) for a, b in pairwise(cuts)]
    whole = text_aggregates(batch, labels, tokenizer)
    merged = merge_aggregates(pieces)
    assert merged["rows"] == 301 and merged["positive"] == whole["positive"] and merged["tokens"] == whole["tokens"]
    reference = pd.DataFrame({"text": batch[::-1][:200], "label": rng.integers(0, 2, size=200)})
    reference_unknown = unknown_counts(tokenizer, reference["text"].tolist())
    report = drift_report(reference, reference_unknown, merged, ScoringConfig())
    assert report == drift_report(reference, reference_unknown, merge_aggregates([whole]), ScoringConfig())
    assert report["length_words"]["median"] == float(np.median([len(t.split()) for t in batch]))
    assert report["predicted_labels"]["positive_share"] == round(labels.count("positive") / 301, 4)
