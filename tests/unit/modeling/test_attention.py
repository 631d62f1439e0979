"""The reference attention against PyTorch's, and against the layers of tiny DistilBERT, GPT-2 and
Llama (rotary positions, grouped-query attention) models built from configs (and the real MiniLM
checkpoint's BERT layers)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.modeling.attention import (
    Projections,
    apply_rotary,
    layer_projections,
    merge_heads,
    multi_head_attention,
    rotary_angles,
    scaled_dot_product_attention,
    split_heads,
    verify_layer,
)

TOLERANCE = 1e-5  # float32


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_reference_matches_torch_sdpa(causal, heads):
    generator = torch.Generator().manual_seed(heads)
    q, k, v = (torch.randn(3, heads, 7, 16, generator=generator) for _ in range(3))
    output, weights = scaled_dot_product_attention(q, k, v, causal=causal)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (output - expected).abs().max() < TOLERANCE
    assert torch.allclose(weights.sum(-1), torch.ones(3, heads, 7))
    future = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    if causal:
        assert (weights[..., future] == 0).all()  # exactly zero on every later position
    else:
        assert (weights[..., future] > 0).all()


def test_padding_keys_get_no_weight_and_match_torch_with_a_mask():
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    output, weights = scaled_dot_product_attention(q, k, v, key_padding_mask=keep)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep.bool()[:, None, None, :])
    assert (output - expected).abs().max() < TOLERANCE
    assert (weights[0, ..., 4:] == 0).all()


@pytest.mark.parametrize("heads", [1, 3, 6])
def test_multi_head_attention_matches_torch_nn_multihead(heads):
    torch.manual_seed(heads)
    width = 12
    layer = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    x = torch.randn(2, 5, width)
    w_q, w_k, w_v = layer.in_proj_weight.chunk(3)
    b_q, b_k, b_v = layer.in_proj_bias.chunk(3)
    projections = Projections(w_q, b_q, w_k, b_k, w_v, b_v, layer.out_proj.weight, layer.out_proj.bias)
    with torch.no_grad():
        for causal in (False, True):
            mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1) if causal else None
            expected, expected_weights = layer(x, x, x, attn_mask=mask, average_attn_weights=False)
            output, weights = multi_head_attention(x, projections, heads, causal=causal)
            assert (output - expected).abs().max() < TOLERANCE
            assert (weights - expected_weights).abs().max() < TOLERANCE


def test_split_and_merge_heads_are_inverse():
    x = torch.randn(2, 5, 12)
    assert split_heads(x, 3).shape == (2, 3, 5, 4)
    assert torch.equal(merge_heads(split_heads(x, 3)), x)


# --- the real models' layers --------------------------------------------------------------


@pytest.fixture(scope="module")
def distilbert(tiny_distilbert_classifier):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_distilbert_classifier), attn_implementation="eager"
    )
    return model, AutoTokenizer.from_pretrained(str(tiny_distilbert_classifier))


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2), attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


REVIEWS = ["A slow start, but the ending was wonderful and moving.", "Dull."]


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_distilbert_layer_is_bidirectional_attention_recomputed(distilbert, layer):
    model, tokenizer = distilbert
    batch = tokenizer(REVIEWS, return_tensors="pt", padding=True)
    result = verify_layer(model, batch["input_ids"], batch["attention_mask"], layer)
    assert result["max_abs_diff_weights"] < TOLERANCE and result["max_abs_diff_hidden"] < 1e-4
    assert not result["causal"] and result["max_future_weight"] > 0.01  # positions see later tokens
    assert result["rows_sum_to_one"]


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_gpt2_layer_is_causal_attention_recomputed(gpt2, padding_side):
    model, tokenizer = gpt2
    tokenizer.padding_side = padding_side
    batch = tokenizer(REVIEWS, return_tensors="pt", padding=True)
    for layer in range(model.config.n_layer):
        result = verify_layer(model, batch["input_ids"], batch["attention_mask"], layer)
        assert result["max_abs_diff_weights"] < TOLERANCE and result["max_abs_diff_hidden"] < 1e-4
        assert result["causal"] and result["max_future_weight"] == 0.0  # exactly zero on every later position


def test_gpt2_projections_are_split_from_its_fused_conv1d(gpt2):
    model, _ = gpt2
    p = layer_projections(model, 0)
    width = model.config.n_embd
    assert p.w_q.shape == p.w_k.shape == p.w_v.shape == p.w_o.shape == (width, width)
    x = torch.randn(1, 3, width)
    fused = model.transformer.h[0].attn.c_attn(x)
    assert torch.allclose(fused[..., :width], x @ p.w_q.T + p.b_q, atol=1e-6)
    assert torch.allclose(fused[..., 2 * width :], x @ p.w_v.T + p.b_v, atol=1e-6)


def test_real_minilm_bert_layers_recomputed(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(minilm_path), attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    batch = tokenizer(REVIEWS, return_tensors="pt", padding=True)
    for layer in (0, 5):
        result = verify_layer(model, batch["input_ids"], batch["attention_mask"], layer)
        assert result["kind"] == "bert" and result["max_abs_diff_weights"] < TOLERANCE
        assert result["max_abs_diff_hidden"] < 1e-4


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from helpers import save_tiny_llama, tiny_bpe_tokenizer

    folder = save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")
    tokenizer = tiny_bpe_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager"), tokenizer


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_llama_layer_with_rope_and_gqa_is_causal_attention_recomputed(llama, padding_side):
    model, tokenizer = llama
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (4, 2)
    tokenizer.padding_side = padding_side
    batch = tokenizer(REVIEWS, return_tensors="pt", padding=True)
    for layer in range(model.config.num_hidden_layers):
        result = verify_layer(model, batch["input_ids"], batch["attention_mask"], layer)
        assert result["kind"] == "llama" and (result["heads"], result["kv_heads"]) == (4, 2)
        assert result["max_abs_diff_weights"] < TOLERANCE and result["max_abs_diff_hidden"] < TOLERANCE
        assert result["causal"] and result["max_future_weight"] == 0.0
    model.config.rope_parameters = {**model.config.rope_parameters, "rope_theta": 500.0}  # the wrong angles
    try:
        wrong = verify_layer(model, batch["input_ids"], batch["attention_mask"], 1)
    finally:
        model.config.rope_parameters = {**model.config.rope_parameters, "rope_theta": 10000.0}
    assert wrong["max_abs_diff_weights"] > 1e-4  # the check sees rotary positions


def test_rotary_scores_depend_on_relative_positions_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> float:
        cos_m, sin_m = rotary_angles(torch.tensor([[m]]), 8, 10000.0)
        cos_n, sin_n = rotary_angles(torch.tensor([[n]]), 8, 10000.0)
        return float((apply_rotary(q, cos_m, sin_m) * apply_rotary(k, cos_n, sin_n)).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    assert torch.allclose(apply_rotary(q, *rotary_angles(torch.tensor([[0]]), 8, 10000.0)), q)  # position 0: no turn


def test_grouped_query_attention_equals_full_attention_with_repeated_key_value_heads():
    torch.manual_seed(0)
    width, heads, kv_heads = 16, 4, 2
    d = width // heads
    w = {
        name: torch.randn(out, width)
        for name, out in (("q", width), ("k", kv_heads * d), ("v", kv_heads * d), ("o", width))
    }
    zeros = {name: torch.zeros(t.shape[0]) for name, t in w.items()}
    grouped = Projections(w["q"], zeros["q"], w["k"], zeros["k"], w["v"], zeros["v"], w["o"], zeros["o"])
    # the same attention with every key/value head written out once per query head it serves
    repeat = lambda t: t.reshape(kv_heads, d, width).repeat_interleave(heads // kv_heads, 0).reshape(width, width)  # noqa: E731
    full = Projections(
        w["q"], zeros["q"], repeat(w["k"]), torch.zeros(width), repeat(w["v"]), torch.zeros(width), w["o"], zeros["o"]
    )
    x = torch.randn(2, 5, width)
    out_grouped, weights_grouped = multi_head_attention(x, grouped, heads, causal=True, n_kv_heads=kv_heads)
    out_full, weights_full = multi_head_attention(x, full, heads, causal=True)
    assert torch.allclose(out_grouped, out_full, atol=TOLERANCE) and torch.allclose(weights_grouped, weights_full)
    with pytest.raises(ValueError, match="do not fit 4 heads"):
        multi_head_attention(x, grouped, heads, n_kv_heads=3)


def test_layer_out_of_range_and_unsupported_model(distilbert):
    model, tokenizer = distilbert
    batch = tokenizer(REVIEWS[:1], return_tensors="pt")
    with pytest.raises(
        PipelineError, match=r"layer: layer 2 is out of range \(the model has 2: 0-1, or -1 for the last\)"
    ):
        verify_layer(model, batch["input_ids"], batch["attention_mask"], 2)
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2, vocab_size=50))
    with pytest.raises(PipelineError, match="model type 't5' is not supported"):
        verify_layer(t5, batch["input_ids"] % 50, batch["attention_mask"], 0)


def test_attention_check_command_on_a_classifier_and_a_generator(tiny_distilbert_classifier, tiny_gpt2, tmp_path):
    from helpers import run_cli

    for folder, kind in ((tiny_distilbert_classifier, "distilbert, bidirectional"), (tiny_gpt2, "gpt2, causal")):
        proc = run_cli(
            "attention-check", "The film was dull, but the ending moved me.", "-m", str(folder), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert kind in proc.stdout and "ok: every layer within 0.0001" in proc.stdout
    empty = run_cli("attention-check", " ", "-m", str(tiny_gpt2), cwd=tmp_path)
    assert empty.returncode == 1 and "text: empty" in empty.stderr
