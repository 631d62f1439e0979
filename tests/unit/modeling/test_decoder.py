"""The generator as a model on a tiny Llama (rotary positions, grouped-query attention), saved as
safetensors and as a GGUF file: the same loading path as the real checkpoints, fine-tuning with
the control codes, resumable checkpoints, seeded generation, tail cuts of long reviews."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import make_reviews, save_tiny_llama, save_tiny_llama_gguf, tiny_bpe_tokenizer, tiny_generation_params
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.labels import LABELS
from imdb_mlops.modeling.decoder import finetune, lm_sequences, load_generator, perplexity
from imdb_mlops.modeling.textgen import CONTROL_CODES, generate_texts


def params_for(model: str, **extra: object):
    return tiny_generation_params(**{"generation.model": model, **extra})


@pytest.fixture(scope="module", params=["safetensors", "gguf"])
def tiny_llama_source(request, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("llama")
    if request.param == "gguf":
        return str(save_tiny_llama_gguf(folder / "tiny-llama.F32.gguf"))
    return str(save_tiny_llama(folder / "tiny-llama"))


def test_a_tiny_llama_fine_tunes_saves_as_safetensors_and_generates_the_same_text_twice(tiny_llama_source, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = params_for(tiny_llama_source, **{"generation.finetune.review_part": "tail",
                                              "generation.decoding.guidance_scale": 2.0})  # fmt: skip
    reviews = make_reviews(64)
    model, tokenizer = load_generator(params.generation, params, [])
    texts, labels = reviews["text"].tolist(), [int(v) for v in reviews["label"]]
    before = perplexity(model, tokenizer, texts[:16], labels[:16], 64, "tail")
    sentiments = [LABELS[v] for v in labels]
    report = finetune(params, model, tokenizer, texts, sentiments, tmp_path / "checkpoints", "cpu")
    after = perplexity(model, tokenizer, texts[:16], labels[:16], 64, "tail")
    assert report["steps"] == 6 and after < before  # it learned the synthetic reviews
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())

    model.save_pretrained(tmp_path / "saved", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists() and not list((tmp_path / "saved").glob("*.bin"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"))
    reloaded_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    requests = [("positive", "the film"), ("negative", ""), ("negative", "the acting")]
    first, _ = generate_texts(reloaded, reloaded_tokenizer, requests, params.generation.decoding)
    second, _ = generate_texts(reloaded, reloaded_tokenizer, requests, params.generation.decoding)
    original, _ = generate_texts(model, tokenizer, requests, params.generation.decoding)
    assert first == second == original
    assert reloaded_tokenizer.convert_tokens_to_ids(CONTROL_CODES["positive"]) == tokenizer.convert_tokens_to_ids(
        CONTROL_CODES["positive"]
    )


def test_long_reviews_keep_their_start_or_their_end_after_the_code():
    tokenizer = tiny_bpe_tokenizer()
    tokenizer.add_tokens(list(CONTROL_CODES.values()), special_tokens=True)
    text = " ".join(["the film"] * 30) + " and the ending was great"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    code, eos = tokenizer.convert_tokens_to_ids(CONTROL_CODES["positive"]), tokenizer.eos_token_id
    head = lm_sequences(tokenizer, [text], ["positive"], 16, "head")[0]
    tail = lm_sequences(tokenizer, [text], ["positive"], 16, "tail")[0]
    assert head == [code, *ids[:15]] and tail == [code, *ids[-14:], eos]
    sentences = "the film was dull and slow. the plot was weak. the ending was great!"
    suffixes = ("the plot was weak. the ending was great!", "the ending was great!")
    mid_sentence_cuts = 0
    for block in range(10, 22):
        raw = tokenizer.decode([*ids_of(tokenizer, sentences), eos][-(block - 1) :], skip_special_tokens=True)
        cut = lm_sequences(tokenizer, [sentences], ["positive"], block, "tail")[0]
        tail = tokenizer.decode(cut[1:], skip_special_tokens=True)
        assert cut[0] == code and raw.endswith(tail) and len(cut) <= block
        mid_sentence_cuts += raw.strip() not in suffixes
        assert tail.strip() in suffixes  # it opens at a sentence start, not where the raw cut fell
    assert mid_sentence_cuts >= 3  # the raw cut often falls mid-sentence
    short = lm_sequences(tokenizer, ["great"], ["negative"], 16, "tail")[0]
    assert short == lm_sequences(tokenizer, ["great"], ["negative"], 16, "head")[0]  # short reviews whole, with eos
    assert short[-1] == eos and len(short) < 16


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_code_embeddings_start_at_their_sentiment_words(tmp_path: Path):
    folder = save_tiny_llama(tmp_path / "tiny-llama")
    words = {"negative": "awful boring", "positive": "great superb"}
    params = params_for(str(folder), **{"generation.code_words": words})
    model, tokenizer = load_generator(params.generation, params, [])
    embeddings = model.get_input_embeddings().weight
    for sentiment, text in words.items():
        ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
        assert torch.allclose(
            embeddings[tokenizer.convert_tokens_to_ids(CONTROL_CODES[sentiment])], embeddings[ids].mean(0)
        )


def test_a_decoder_without_an_eos_token_is_refused_before_training(tmp_path: Path):
    folder = save_tiny_llama(tmp_path / "no-eos")
    tokenizer = tiny_bpe_tokenizer()
    tokenizer.eos_token = None
    tokenizer.bos_token = None
    tokenizer.save_pretrained(folder)
    params = params_for(str(folder))
    with pytest.raises(PipelineError) as error:
        load_generator(params.generation, params, [])
    assert str(error.value) == f"generation.model: the tokenizer of '{folder}' has no end-of-text token (eos_token)"
