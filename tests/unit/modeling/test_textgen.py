"""Control codes and batched decoding on a tiny GPT-2 built from a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from imdb_mlops.config import DecodingConfig
from imdb_mlops.modeling.textgen import (
    CONTROL_CODES,
    GenerationRequestError,
    add_control_codes,
    check_sentiment,
    generate_texts,
    prompt_ids,
)


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    add_control_codes(model, tokenizer)
    return model, tokenizer


def test_control_codes_are_single_tokens_that_survive_save_and_load(tiny, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = tiny
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for sentiment, code in CONTROL_CODES.items():
        ids = reloaded(code + "the film", add_special_tokens=False)["input_ids"]
        assert ids[0] == reloaded.convert_tokens_to_ids(code) == tokenizer.convert_tokens_to_ids(code)
        assert ids[1:] == reloaded("the film", add_special_tokens=False)["input_ids"]  # the code is not split
        assert prompt_ids(reloaded, sentiment, "the film") == ids
    assert reloaded.pad_token is not None
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path)).get_input_embeddings().num_embeddings == len(reloaded)


def test_same_seed_same_texts_other_seed_other_texts(tiny):
    model, tokenizer = tiny
    tokenizer.padding_side = "left"
    requests = [("positive", "This movie"), ("negative", ""), ("positive", "I watched this film"), ("negative", "The")]
    decoding = DecodingConfig(max_new_tokens=12, batch_size=3, seed=5)
    first, n_first = generate_texts(model, tokenizer, requests, decoding)
    second, n_second = generate_texts(model, tokenizer, requests, decoding)
    other, _ = generate_texts(model, tokenizer, requests, DecodingConfig(max_new_tokens=12, batch_size=3, seed=6))
    assert first == second and n_first == n_second > 0
    assert other != first
    for (_, prompt), text in zip(requests, first, strict=True):
        assert text.startswith(prompt)
        assert "<|" not in text  # control codes are not printed


def test_left_padded_batch_gives_what_each_prompt_gives_alone(tiny):
    """Greedy decoding of a batch (left padding, attention mask) equals one prompt at a time."""
    model, tokenizer = tiny
    requests = [("positive", "This movie was"), ("negative", ""), ("positive", "the")]
    batched, _ = generate_texts(
        model, tokenizer, requests, DecodingConfig(strategy="greedy", max_new_tokens=10, batch_size=3)
    )
    alone = [
        generate_texts(model, tokenizer, [r], DecodingConfig(strategy="greedy", max_new_tokens=10))[0][0]
        for r in requests
    ]
    assert batched == alone


def test_unknown_sentiment_and_too_long_requests_are_refused(tiny):
    model, tokenizer = tiny
    with pytest.raises(GenerationRequestError, match="sentiment: 'happy' is unknown"):
        check_sentiment("happy")
    with pytest.raises(GenerationRequestError, match="max_new_tokens: 300 new tokens .* context of 256 tokens"):
        generate_texts(model, tokenizer, [("positive", "hi")], DecodingConfig(max_new_tokens=300))
