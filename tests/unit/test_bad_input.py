"""Bad input that used to end in a traceback or a silently wrong result: each is now one line that
names the problem, or the right result."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from helpers import make_reviews, run_cli
from imdb_mlops.common.errors import ParamsError, PipelineError
from imdb_mlops.config import DataConfig, HubConfig, Params, TokenizeConfig, load_params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.sources import read_source
from imdb_mlops.registry.tracking import ensure_tracking_reachable
from imdb_mlops.scoring.batch import read_new_reviews
from imdb_mlops.stages.ingest import prepare_splits
from imdb_mlops.stages.tokenize import read_raw_splits, tokenize


def with_origin(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(origin=[f"row {i + 1}" for i in range(len(frame))])


def test_params_option_pointing_at_a_folder(tmp_path):
    with pytest.raises(ParamsError, match="is a folder; expected a params YAML file"):
        load_params(tmp_path)
    proc = run_cli("check-params", "-p", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "is a folder; expected a params YAML file (e.g. params.yaml)"
    )


def test_text_column_equal_to_label_column():
    with pytest.raises(ValueError, match="must differ from data.text_column"):
        DataConfig(text_column="review", label_column="review")


def test_table_format_on_a_folder(tmp_path):
    (tmp_path / "imdb").mkdir()
    with pytest.raises(PipelineError, match="data.format: 'table' needs a .csv, .tsv or .parquet file"):
        read_source(DataConfig(source=str(tmp_path / "imdb"), format="table"), HubConfig())


def test_aclimdb_tree_with_a_folder_named_like_a_review(tmp_path):
    for split in ("train", "test"):
        for polarity in ("pos", "neg"):
            (tmp_path / "aclImdb" / split / polarity).mkdir(parents=True)
            (tmp_path / "aclImdb" / split / polarity / "1_8.txt").write_text("a review")
    (tmp_path / "aclImdb" / "train" / "pos" / "2_9.txt").mkdir()
    with pytest.raises(PipelineError, match=r"2_9.txt: not a file; an aclImdb tree holds one review per .txt file"):
        read_source(DataConfig(source=str(tmp_path / "aclImdb")), HubConfig())


@pytest.mark.parametrize(("labels", "expected"), [([0.0, 1.0], [0, 1]), (["0", "1"], [0, 1]), ([0, 1], [0, 1])])
def test_labels_stored_as_floats_or_strings_are_read(labels, expected):
    frame = with_origin(make_reviews(40)).assign(label=[labels[i % 2] for i in range(40)])
    result = prepare_splits({"all": frame}, DataConfig(), 1)
    assert sorted(set(result.splits["train"]["label"])) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (DataConfig(validation_size=0.001), r"data.validation_size: 0.001 of \d+ reviews in train leaves 0 held out"),
        (DataConfig(test_size=0.02), r"data.test_size: 0.02 of 20 reviews in the source leaves 0 held out"),
    ],
)
def test_too_small_splits_name_the_param(data, message):
    with pytest.raises(PipelineError, match=message):
        prepare_splits({"all": with_origin(make_reviews(20))}, data, 1)


def test_a_cap_of_all_but_one_row_samples_instead_of_failing():
    frame = make_reviews(21)
    assert len(stratified_sample(frame, 20, 1)) == 20


def test_corrupt_raw_parquet_at_tokenize(tmp_path):
    for split in ("train", "validation", "test"):
        make_reviews(8).to_parquet(tmp_path / f"{split}.parquet")
    (tmp_path / "test.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PipelineError, match=r"test.parquet: not a readable parquet file .*re-run dvc repro ingest"):
        read_raw_splits(tmp_path)


def test_a_tokenizer_without_padding_is_refused_at_tokenize(tmp_path, tiny_gpt2):
    params = Params(model={"name": str(tiny_gpt2)}, tokenize=TokenizeConfig(max_length=64))
    with pytest.raises(PipelineError, match="has no padding token"):
        tokenize(params, tmp_path / "raw", tmp_path / "tok", tmp_path / "r.json")
    assert not (tmp_path / "tok").exists()


def test_a_misspelt_tracking_uri_scheme():
    with pytest.raises(PipelineError, match="'htpp://127.0.0.1:5000' has an unknown scheme 'htpp'"):
        ensure_tracking_reachable("htpp://127.0.0.1:5000", 2)
    ensure_tracking_reachable("postgresql+psycopg://u@localhost/mlflow", 2)  # known scheme, not probed


def test_a_parquet_dataset_folder_is_scored_once_and_txt_folders_are_skipped(tmp_path):
    folder = tmp_path / "incoming" / "preds.parquet"  # as Spark and Dask write them
    folder.mkdir(parents=True)
    pd.DataFrame({"text": ["good", "bad"]}).to_parquet(folder / "part-0000.parquet")
    pd.DataFrame({"text": ["fine"]}).to_parquet(folder / "part-0001.parquet")
    (tmp_path / "incoming" / "notes.txt").mkdir()  # a folder named like a review file
    reviews = read_new_reviews(tmp_path / "incoming", "text")
    assert sorted(reviews["text"]) == ["bad", "fine", "good"]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PipelineError, match="empty.txt: no reviews found"):
        read_new_reviews(tmp_path / "empty.txt", "text")
    assert os.path.exists(folder)


def _tsv(path, rows):
    path.write_text("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path


def test_unquoted_tsv_whose_review_starts_with_a_quote_is_refused_not_merged(tmp_path):
    rows = [(f"review {i} was fine", i % 2) for i in range(200)]
    rows[7] = ('"Brilliant, from start to end', 1)  # opens a quote pandas reads on to the next '"'
    rows[30] = ('a good film, "overall', 0)
    source = _tsv(tmp_path / "reviews.tsv", rows)
    with pytest.raises(
        PipelineError, match=r"reviews.tsv row 8: its text runs over \d+ more lines that look like rows"
    ):
        read_source(DataConfig(source=str(source)), HubConfig())
    _, frames = read_source(DataConfig(source=str(source), quoting="none"), HubConfig())
    assert len(frames["all"]) == 200 and frames["all"]["text"][7] == '"Brilliant, from start to end'


def test_quoted_csv_reviews_spanning_lines_are_kept(tmp_path):
    source = tmp_path / "reviews.csv"
    body = "".join(f'"review {i},\nwith a second line",{i % 2}\n' for i in range(20))
    source.write_text("text,label\n" + body, encoding="utf-8")
    _, frames = read_source(DataConfig(source=str(source)), HubConfig())
    assert len(frames["all"]) == 20 and frames["all"]["text"][3] == "review 3,\nwith a second line"


def test_the_bad_label_is_named_by_its_own_row(tmp_path):
    rows = [(f"review {i} was fine", i % 2) for i in range(200)]
    rows[120] = ("review 120 was fine", "maybe")
    source = _tsv(tmp_path / "reviews.tsv", rows)
    _, frames = read_source(DataConfig(source=str(source)), HubConfig())
    with pytest.raises(PipelineError, match=r"reviews.tsv row 121: label 'maybe' is not 0 or 1"):
        prepare_splits(frames, DataConfig(source=str(source)), 1)


def test_a_mistyped_relative_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    from imdb_mlops.common.hub import ensure_hub_reachable, local_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "classifier").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"model.name: path 'models/classifer' does not exist \(folder 'models'"):
        local_path("models/classifer", "model.name")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert local_path("modls/classifier", "model.name") is None  # could be a hub id: the probe decides
    with pytest.raises(PipelineError, match="nor is there a local folder 'modls/classifier'"):
        ensure_hub_reachable("model.name", "modls/classifier", 1.0)
