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
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    texts, labels = reviews["text"].tolist(), [int(v) for v in reviews["label"]]
    before = perplexity(model, tokenizer, texts[:16], labels[:16], 64, "tail")
    sentiments = [LABELS[v] for v in labels]
    report = finetune(
        params.generation, params.seed, model, tokenizer, texts, sentiments, tmp_path / "checkpoints", "cpu"
    )
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
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
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
        load_generator(params.generation, params.hub, params.seed, [])
    assert str(error.value) == f"generation.model: the tokenizer of '{folder}' has no end-of-text token (eos_token)"


def test_lora_trains_the_top_layers_and_codes_only_and_merges_into_plain_weights(tmp_path):
    """generation.finetune.method lora: adapters on the top layer, the two code rows trainable, the
    rest frozen; merged after training, so the saved model is a plain Llama in safetensors that
    transformers reloads without peft and that generates the same text."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(save_tiny_llama(tmp_path / "tiny-llama"))
    lora = {"generation.finetune.method": "lora", "generation.finetune.lora_layers": 1,
            "generation.finetune.lora_rank": 4, "generation.finetune.learning_rate": 3e-2}  # fmt: skip
    params = params_for(source, **lora)
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    before = {name: value.clone() for name, value in model.state_dict().items()}
    reviews = make_reviews(64)
    texts, sentiments = reviews["text"].tolist(), [LABELS[int(v)] for v in reviews["label"]]
    report = finetune(
        params.generation, params.seed, model, tokenizer, texts, sentiments, tmp_path / "checkpoints", "cpu"
    )

    layers = model.config.num_hidden_layers
    assert report["method"] == "lora" and report["steps"] == 6
    assert 0 < report["trainable_parameters"] < sum(v.numel() for v in before.values()) / 10
    after = model.state_dict()
    assert set(after) == set(before)  # merged: no adapter weights left on the model
    top, bottom = f"layers.{layers - 1}.", "layers.0."
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(top in name for name in changed) and not any(bottom in name for name in changed)
    embeddings = "model.embed_tokens.weight"
    rows = torch.nonzero((before[embeddings] != after[embeddings]).any(dim=1)).flatten().tolist()
    codes = sorted(tokenizer.convert_tokens_to_ids(code) for code in CONTROL_CODES.values())
    assert rows == codes  # of the embedding table, only the control codes' rows trained

    model.save_pretrained(tmp_path / "saved", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("adapter_*"))
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    assert names and not [key for key in names if "lora" in key or "token_adapter" in key]
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "saved"))
    requests = [("positive", "the film"), ("negative", "")]
    again, _ = generate_texts(reloaded, AutoTokenizer.from_pretrained(str(tmp_path / "saved")), requests,
                              params.generation.decoding)  # fmt: skip
    original, _ = generate_texts(model, tokenizer, requests, params.generation.decoding)
    assert again == original


def test_lora_layers_beyond_the_model_are_refused(tmp_path):
    source = str(save_tiny_llama(tmp_path / "tiny-llama"))
    params = params_for(source, **{"generation.finetune.method": "lora", "generation.finetune.lora_layers": 99})
    model, tokenizer = load_generator(params.generation, params.hub, params.seed, [])
    reviews = make_reviews(8)
    with pytest.raises(PipelineError, match="generation.finetune.lora_layers: 99 exceeds the model's 2 decoder layers"):
        finetune(
            params.generation,
            params.seed,
            model,
            tokenizer,
            reviews["text"].tolist(),
            ["positive"] * 8,
            tmp_path / "c",
            "cpu",
        )
