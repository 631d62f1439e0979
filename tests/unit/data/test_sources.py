"""Every form data.source takes, on small synthetic data written here; and its bad inputs."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import make_reviews, run_cli, write_hub_layout
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import DataConfig, HubConfig
from imdb_mlops.data.sources import detect_format, read_source


def read(source: Path | str, **data):
    return read_source(DataConfig(source=str(source), **data), HubConfig(timeout_s=3))


def write_acl_tree(root: Path, n: int = 6) -> Path:
    for split in ("train", "test"):
        for polarity in ("pos", "neg"):
            folder = root / "aclImdb" / split / polarity
            folder.mkdir(parents=True)
            for i in range(n):
                rating = 8 if polarity == "pos" else 2
                (folder / f"{i}_{rating}.txt").write_text(f"{split} {polarity} review number {i}.<br />Yes.")
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    return root / "aclImdb"


def test_hub_layout_folder(hub_layout):
    fmt, frames = read(hub_layout)
    assert fmt == "parquet_dir"
    assert set(frames) == {"train", "test"}
    assert len(frames["train"]) == 200 and len(frames["test"]) == 100
    assert {"text", "label", "origin", "rating"} <= set(frames["train"].columns)
    assert frames["train"]["origin"].iloc[0].endswith("train-00000-of-00001.parquet row 1")


def test_aclimdb_folder(tmp_path):
    root = write_acl_tree(tmp_path)
    fmt, frames = read(root)
    assert fmt == "aclimdb"
    train = frames["train"]
    assert len(train) == 12 and len(frames["test"]) == 12  # unsup/ is not read
    assert train.groupby("label")["rating"].first().to_dict() == {0: 2, 1: 8}
    assert "train pos review number 3." in set(train["text"].str.split("<br").str[0])
    # the parent folder of aclImdb/ works too
    assert read(tmp_path)[0] == "aclimdb"


def test_aclimdb_tarball_matches_folder(tmp_path):
    root = write_acl_tree(tmp_path / "src")
    tarball = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="aclImdb")
    fmt, from_tar = read(tarball)
    _, from_dir = read(root)
    assert fmt == "aclimdb"
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(from_tar[split].drop(columns="origin"), from_dir[split].drop(columns="origin"))


def test_aclimdb_undecodable_file_is_marked(tmp_path):
    root = write_acl_tree(tmp_path)
    (root / "train" / "pos" / "99_9.txt").write_bytes(b"caf\xe9 latin-1 bytes")
    _, frames = read(root)
    bad = frames["train"][frames["train"]["text"].isna()]
    assert bad["origin"].tolist() == [f"{root}:train/pos/99_9.txt"]


def test_csv_with_label_map_and_custom_columns(tmp_path):
    frame = make_reviews(40).rename(columns={"text": "review"})
    frame["sentiment"] = frame.pop("label").map({0: "negative", 1: "positive"})
    path = tmp_path / "movie_data.csv"
    frame.to_csv(path, index=False)
    fmt, frames = read(path, text_column="review", label_column="sentiment", label_map={"negative": 0, "positive": 1})
    assert fmt == "table" and set(frames) == {"all"}
    assert frames["all"]["text"].tolist() == frame["review"].tolist()
    assert frames["all"]["origin"].iloc[4] == f"{path} row 5"


def test_csv_undecodable_row_is_marked(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood film,1\nbad \xff\xfe bytes,0\nfine,1\n")
    _, frames = read(path)
    assert frames["all"]["text"].isna().tolist() == [False, True, False]


def test_a_latin1_csv_reads_whole_with_data_encoding(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes("text,label\nun film très réussi,1\nennuyeux à mourir,0\nfine,1\n".encode("latin-1"))
    _, as_utf8 = read(path)
    assert as_utf8["all"]["text"].isna().tolist() == [True, True, False]  # dropped later, with the hint
    _, as_latin1 = read(path, encoding="latin-1")
    assert as_latin1["all"]["text"].tolist() == ["un film très réussi", "ennuyeux à mourir", "fine"]
    with pytest.raises(ValueError, match="unknown text encoding 'latin-42'"):
        DataConfig(encoding="latin-42")


def test_hub_offline_switch_still_gives_the_offline_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    # The libraries read the switch once, at import: a process started with it has these set (an
    # earlier test in this worker imported them without it, and they would try the network instead).
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(PipelineError, match=r"data.source: .*stanfordnlp/imdb.*imdb-mlops exp-run --offline"):
        read("stanfordnlp/imdb")


def test_single_parquet_file(tmp_path):
    path = tmp_path / "reviews.parquet"
    make_reviews(30).to_parquet(path)
    fmt, frames = read(path)
    assert fmt == "table" and len(frames["all"]) == 30


def test_hub_unreachable_fails_within_seconds(tmp_path):
    # A closed local port stands in for an unreachable hub (no network is needed or used).
    started = time.monotonic()
    proc = run_cli("ingest", "--params", str(tmp_path / "p.yaml"), cwd=tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert proc.returncode == 2  # params file missing: checked before anything else
    (tmp_path / "p.yaml").write_text("data:\n  source: stanfordnlp/imdb\nhub:\n  timeout_s: 2\n")
    proc = run_cli("ingest", "--params", "p.yaml", cwd=tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach the Hugging Face hub at http://127.0.0.1:9 to load 'stanfordnlp/imdb'" in lines[0]
    assert "data.source=../shared/imdb" in lines[0]
    assert elapsed < 60  # seconds, not minutes of retries
    assert not (tmp_path / "data").exists()


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(
        PipelineError, match="data.source: cannot reach the Hugging Face hub .* 'someone/no-such-dataset'"
    ):
        read("someone/no-such-dataset")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "data.source: path '{p}/missing' does not exist"),
        (lambda p: "../no/such/folder", "data.source: path '../no/such/folder' does not exist"),
        (lambda p: p, "holds neither parquet files"),
    ],
)
def test_missing_or_unknown_source(tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(PipelineError, match=message.format(p=tmp_path).replace("(", r"\(").replace(")", r"\)")):
        read(source)


def test_missing_text_column_names_file_and_column(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(PipelineError) as info:
        read(path)
    assert str(info.value) == f"{path}: missing text column 'text' (columns: review, label); set data.text_column"


def test_parquet_missing_label_column(tmp_path):
    root = write_hub_layout(tmp_path / "imdb")
    pd.DataFrame({"text": ["a"]}).to_parquet(root / "plain_text" / "test-00000-of-00001.parquet")
    with pytest.raises(PipelineError, match=r"test-00000-of-00001.parquet: missing label column 'label'"):
        read(root)


def test_corrupt_parquet_names_the_file(tmp_path):
    root = write_hub_layout(tmp_path / "imdb")
    bad = root / "plain_text" / "train-00000-of-00001.parquet"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(PipelineError, match=rf"{bad}: not a readable parquet file"):
        read(root)


def test_tarball_that_is_not_aclimdb(tmp_path):
    tarball = tmp_path / "other.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        payload = b"hello"
        info = tarfile.TarInfo("notes/readme.txt")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(PipelineError, match=rf"{tarball}: not an aclImdb archive"):
        read(tarball)


def test_file_that_is_not_a_tarball(tmp_path):
    fake = tmp_path / "aclImdb_v1.tar.gz"
    fake.write_bytes(b"not gzip at all")
    with pytest.raises(PipelineError, match=rf"{fake}: not a readable tar archive"):
        read(fake)


def test_unknown_file_type(tmp_path):
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(PipelineError, match="cannot tell the format"):
        detect_format(str(path), path)
