"""The tokenize stage: truncation strategies, no padding, multi-process map, metadata, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from helpers import make_reviews
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import DataConfig, ModelConfig, Params, TokenizeConfig
from imdb_mlops.modeling.pretrained import METADATA_FILE, load_tokenizer, tokenizer_fingerprint
from imdb_mlops.stages.ingest import ingest
from imdb_mlops.stages.tokenize import tokenize, tokenize_splits

LONG = " ".join(f"word{i % 50} is here" for i in range(200)) + " and the final verdict: masterpiece"


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return load_tokenizer(str(minilm_path), Params().hub)


def encode(tokenizer, texts, **cfg) -> Dataset:
    splits = DatasetDict({"train": Dataset.from_dict({"text": texts, "label": [0] * len(texts)})})
    return tokenize_splits(splits, tokenizer, TokenizeConfig(**cfg))["train"]


def test_short_reviews_are_not_padded_or_cut(tokenizer):
    texts = ["A fine film.", "Dreadful from start to finish, I walked out."]
    ds = encode(tokenizer, texts, max_length=64)
    assert ds["input_ids"] == [tokenizer(t)["input_ids"] for t in texts]
    assert len(ds["input_ids"][0]) != len(ds["input_ids"][1])
    assert ds["truncated"] == [False, False]
    assert set(ds.column_names) == {"input_ids", "label", "n_tokens", "truncated"}


def test_padding_and_truncation_switched_on_in_tokenizer_json_are_ignored(minilm_path):
    """MiniLM's tokenizer.json pads and cuts every text to 128 tokens; the stage must do neither."""
    from imdb_mlops.modeling.encoding import Encoder

    fresh = load_tokenizer(str(minilm_path), Params().hub)
    encoder = Encoder(fresh, TokenizeConfig(max_length=512, truncation="head"))
    fresh.backend_tokenizer.enable_padding(length=128)  # as shipped (tokenizer() calls switch it off)
    fresh.backend_tokenizer.enable_truncation(max_length=128)
    ids = encoder({"text": ["A fine film.", LONG]}).column("input_ids").to_pylist()
    assert len(ids[0]) == 6 and fresh.pad_token_id not in ids[0]
    assert len(ids[1]) == 512


def test_head_truncation_matches_the_tokenizer(tokenizer):
    ds = encode(tokenizer, [LONG], max_length=32, truncation="head")
    assert ds["input_ids"][0] == tokenizer(LONG, truncation=True, max_length=32)["input_ids"]
    assert ds["truncated"] == [True]
    assert ds["n_tokens"][0] == len(tokenizer(LONG)["input_ids"]) > 32


def test_head_tail_keeps_the_ending(tokenizer):
    full = tokenizer(LONG)["input_ids"]
    ids = encode(tokenizer, [LONG], max_length=32, truncation="head_tail", head_share=1 / 3)["input_ids"][0]
    assert len(ids) == 32
    assert ids[:11] == full[:11]  # [CLS] + 10 head tokens
    assert ids[11:] == full[-21:]  # 20 tail tokens + [SEP]
    assert "masterpiece" in tokenizer.decode(ids)


def test_two_processes_give_the_same_ids(tokenizer):
    texts = make_reviews(300)["text"].tolist() + [LONG] * 5
    one = encode(tokenizer, texts, max_length=48, num_proc=1, batch_size=64)
    two = encode(tokenizer, texts, max_length=48, num_proc=2, batch_size=64)
    assert one["input_ids"] == two["input_ids"] and one["n_tokens"] == two["n_tokens"]


def test_a_split_of_one_batch_or_less_is_tokenized_without_a_pool(tokenizer, monkeypatch):
    """tokenize.num_proc workers at most, and never more than one per batch: a pool for a split that
    fits one batch would start processes for nothing."""
    asked = {}
    real_map = Dataset.map

    def recording_map(self, *args, **kwargs):
        asked[kwargs["desc"]] = kwargs.get("num_proc")
        return real_map(self, *args, **kwargs)

    monkeypatch.setattr(Dataset, "map", recording_map)
    texts = make_reviews(130)["text"].tolist()
    splits = DatasetDict(
        {
            name: Dataset.from_dict({"text": texts[:n], "label": [0] * n})
            for name, n in (("train", 130), ("validation", 50), ("test", 64))
        }
    )
    tokenize_splits(splits, tokenizer, TokenizeConfig(max_length=32, num_proc=4, batch_size=64))
    assert asked == {"Tokenizing train": 3, "Tokenizing validation": None, "Tokenizing test": None}


def test_fingerprint_tells_vocabularies_apart(tmp_path, tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        make_reviews(200)["text"],
        trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"]),
    )
    PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]"
    ).save_pretrained(tmp_path / "tiny")
    tiny = load_tokenizer(str(tmp_path / "tiny"), Params().hub)
    cfg = TokenizeConfig()
    assert (
        tokenizer_fingerprint(tiny, "tiny", cfg)["vocab_digest"]
        != tokenizer_fingerprint(tokenizer, "m", cfg)["vocab_digest"]
    )
    assert tokenizer_fingerprint(tiny, "tiny", cfg)["vocab_size"] == len(tiny) <= 300


def test_stage_writes_datasets_metadata_and_report(tmp_path, hub_layout, minilm_path):
    params = Params(
        data=DataConfig(source=str(hub_layout)),
        model=ModelConfig(name=str(minilm_path)),
        tokenize=TokenizeConfig(max_length=24, num_proc=1),
    )
    ingest(params, tmp_path / "raw", tmp_path / "data.json")
    report = tokenize(params, tmp_path / "raw", tmp_path / "tok", tmp_path / "tokenize.json")
    loaded = load_from_disk(str(tmp_path / "tok"))
    assert set(loaded) == {"train", "validation", "test"}
    assert max(len(ids) for ids in loaded["train"]["input_ids"]) == 24
    assert report["train"]["truncated_share"] > 0
    meta = json.loads((tmp_path / "tok" / METADATA_FILE).read_text())
    assert meta["model_name"] == str(minilm_path) and meta["max_length"] == 24 and meta["truncation"] == "head_tail"
    on_disk = json.loads((tmp_path / "tokenize.json").read_text())
    assert on_disk["test"]["rows"] == len(loaded["test"]) == 100


def test_folder_without_tokenizer_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "distilbert"}')
    with pytest.raises(PipelineError, match=r"model.name: '.*ckpt' has no tokenizer files"):
        load_tokenizer(str(tmp_path / "ckpt"), Params().hub)


def test_missing_model_path_and_unreachable_hub(monkeypatch):
    with pytest.raises(PipelineError, match=r"model.name: path './nowhere' does not exist"):
        load_tokenizer("./nowhere", Params().hub)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(
        PipelineError, match=r"model.name: cannot reach the Hugging Face hub .* 'distilbert-base-uncased'"
    ):
        load_tokenizer("distilbert-base-uncased", Params().hub)


def test_missing_raw_split_and_too_long_max_length(tmp_path, minilm_path):
    params = Params(model=ModelConfig(name=str(minilm_path)))
    with pytest.raises(PipelineError, match=r"raw/train.parquet: missing; run the ingest stage first"):
        tokenize(params, tmp_path / "raw", tmp_path / "tok", tmp_path / "r.json")
    too_long = Params(model=ModelConfig(name=str(minilm_path)), tokenize=TokenizeConfig(max_length=1024))
    with pytest.raises(PipelineError, match="tokenize.max_length: 1024 exceeds the model's limit of 512"):
        tokenize(too_long, tmp_path / "raw", tmp_path / "tok", tmp_path / "r.json")
    assert not Path(tmp_path / "tok").exists()


def test_a_killed_tokenize_leaves_no_worker_processes(tmp_path, minilm_path):
    """kill -9 of the command while datasets.map runs two worker processes: the workers die too."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "raw").mkdir()
    make_reviews(30_000, seed=3).to_parquet(tmp_path / "raw" / "train.parquet")
    for split in ("validation", "test"):
        make_reviews(20, seed=4).to_parquet(tmp_path / "raw" / f"{split}.parquet")
    (tmp_path / "params.yaml").write_text(
        f"model:\n  name: {minilm_path}\ntokenize:\n  num_proc: 2\n  batch_size: 50\n  max_length: 64\n"
    )
    command = [sys.executable, "-m", "imdb_mlops", "tokenize", "--raw", "raw", "--out", "tok", "--report", "r.json"]
    stage = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children(pid: int) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [int(p) for p in found]

    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and stage.poll() is None and len(workers) < 2:
        workers = children(stage.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the workers never started (the stage finished or failed first)"
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [
        w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
    ]
    assert not alive, f"worker processes {alive} outlived the killed stage"
    assert not (tmp_path / "tok").exists()  # nothing half-written
