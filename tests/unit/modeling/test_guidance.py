"""Batched classifier-free guidance on tiny GPT-2 and Llama models built from configs."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_llama
from imdb_mlops.config import DecodingConfig
from imdb_mlops.modeling.guidance import guided_generate, left_padded, logits_processors
from imdb_mlops.modeling.textgen import add_control_codes, generate_texts, prompt_ids

GREEDY = {"strategy": "greedy", "temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": 8}


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder(request, tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if request.param == "gpt2":
        model, tokenizer = (
            AutoModelForCausalLM.from_pretrained(str(tiny_gpt2)),
            AutoTokenizer.from_pretrained(str(tiny_gpt2)),
        )
    else:
        model, tokenizer = tiny_llama()
    add_control_codes(model, tokenizer)
    torch.manual_seed(1)
    with torch.no_grad():  # distinct, non-trivial code embeddings so that guidance has something to push
        model.get_input_embeddings().weight[-2:] = 0.1 * torch.randn(2, model.config.hidden_size)
    return model.eval(), tokenizer


def prompts(tokenizer, sentiments=("positive", "negative", "positive")):
    texts = ["the film was", "", "the acting in this long story"]
    wanted = [prompt_ids(tokenizer, s, t) for s, t in zip(sentiments, texts, strict=True)]
    other = [
        prompt_ids(tokenizer, "negative" if s == "positive" else "positive", t)
        for s, t in zip(sentiments, texts, strict=True)
    ]
    return wanted, other


def test_scale_one_is_plain_greedy_decoding_of_left_padded_batches(decoder):
    model, tokenizer = decoder
    wanted, other = prompts(tokenizer)
    decoding = DecodingConfig(**GREEDY, guidance_scale=1.0)
    ours = guided_generate(model, wanted, other, decoding, tokenizer.pad_token_id, -1, [])
    for row, ids in enumerate(wanted):  # each prompt alone, through transformers' own generate
        alone = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)  # fmt: skip
        assert ours[row].tolist() == alone[0, len(ids) :].tolist()


def test_guided_tokens_follow_the_guidance_formula_and_batches_equal_single_prompts(decoder):
    model, tokenizer = decoder
    wanted, other = prompts(tokenizer)
    decoding = DecodingConfig(**GREEDY, guidance_scale=4.0)
    batched = guided_generate(model, wanted, other, decoding, tokenizer.pad_token_id, -1, [])
    for row in range(len(wanted)):
        alone = guided_generate(model, [wanted[row]], [other[row]], decoding, tokenizer.pad_token_id, -1, [])
        assert batched[row].tolist() == alone[0].tolist()
    changed = 0
    for scale in (4.0, 20.0):
        first = guided_generate(
            model, wanted, other, DecodingConfig(**GREEDY, guidance_scale=scale), tokenizer.pad_token_id, -1, []
        )
        for row in range(len(wanted)):
            with torch.inference_mode():  # the first token by hand: argmax of u + scale (c - u)
                c = torch.log_softmax(model(torch.tensor([wanted[row]])).logits[0, -1], -1)
                u = torch.log_softmax(model(torch.tensor([other[row]])).logits[0, -1], -1)
            assert first[row, 0].item() == int((u + scale * (c - u)).argmax())
            changed += int(c.argmax()) != first[row, 0].item()
    assert changed  # guidance picked another token than the asked code alone somewhere


def test_suppressed_codes_are_never_drawn_and_prompts_are_left_padded():
    codes = [5, 7]
    scores = torch.zeros(2, 10)
    scores[:, codes] = 10.0  # the codes are the likeliest next tokens
    for strategy in ("greedy", "sample"):
        processors = logits_processors(
            DecodingConfig(strategy=strategy, temperature=0.0 if strategy == "greedy" else 0.9), codes
        )
        processed = processors(torch.zeros(2, 3, dtype=torch.long), scores.clone())
        assert torch.isinf(processed[:, codes]).all() and processed.argmax(-1).tolist()[0] not in codes
    ids, mask = left_padded([[1, 2, 3], [4]], pad=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_guided_sampling_is_seeded_through_generate_texts(decoder):
    model, tokenizer = decoder
    requests = [("positive", "the film"), ("negative", ""), ("negative", "the story was")]
    decoding = DecodingConfig(max_new_tokens=10, batch_size=2, seed=3, guidance_scale=3.0)
    first, n_first = generate_texts(model, tokenizer, requests, decoding)
    second, n_second = generate_texts(model, tokenizer, requests, decoding)
    assert first == second and n_first == n_second > 0
    assert all(text.startswith(prompt) and "<|" not in text for (_, prompt), text in zip(requests, first, strict=True))
