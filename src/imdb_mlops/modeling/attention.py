"""Self-attention, written out for reading, and checked against the models the pipeline trains.

Scaled dot-product attention (Vaswani et al., 2017)::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

- ``Q`` (queries, one row per position asking), ``K`` (keys, one row per position asked) and ``V``
  (values, what each position hands over) are the same hidden states through three learned linear
  maps: ``Q = X W_q + b_q``, ``K = X W_k + b_k``, ``V = X W_v + b_v``.
- ``Q K^T`` scores every query against every key; dividing by ``sqrt(d_k)`` keeps the scores'
  variance near 1 whatever the head width, so the softmax does not saturate.
- ``M`` is 0 where attending is allowed and ``-inf`` where it is not: padding keys (both model
  kinds) and, in a **causal** decoder such as GPT-2, every key after the query (``j > i``), so a
  position never sees the future. DistilBERT/BERT are **bidirectional**: no causal mask.
- The softmax turns each query's row into weights that sum to 1; the output is the weighted
  average of the value rows.

Multi-head attention runs ``h`` such attentions side by side on ``d_model / h``-wide slices of
``Q``, ``K`` and ``V`` (each head can look for something different), concatenates the heads and
maps the result back with ``W_o``::

    MultiHead(X) = Concat(head_1, ..., head_h) W_o + b_o,   head_i = Attention(Q_i, K_i, V_i)

Llama-architecture decoders (SmolLM2) add two things:

- **Rotary position embeddings** (RoPE; Su et al., 2021): no position vectors are added to the
  input; instead each query and key is rotated by an angle proportional to its position, pair of
  dimensions by pair of dimensions (frequencies ``theta^(-2i/d)``), so ``q_m . k_n`` depends on
  the positions only through ``m - n``: ``x -> x * cos(m w) + rotate_half(x) * sin(m w)``.
- **Grouped-query attention** (GQA; Ainslie et al., 2023): fewer key/value heads than query heads
  (SmolLM2-135M: 9 query heads, 3 key/value heads); each key/value head serves
  ``n_heads / n_kv_heads`` query heads, which shrinks the KV cache by that factor.

:func:`verify_layer` takes one layer of a real model (DistilBERT, BERT, GPT-2 or Llama), recomputes
its attention weights and output from the layer's own projection weights with these functions, and
compares them with what the model itself produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.modeling.pretrained import require_safetensors


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(Q K^T / sqrt(d_k) + M) V`` and the weights.

    Shapes: ``query`` (..., L, d_k), ``key`` (..., S, d_k), ``value`` (..., S, d_v);
    ``key_padding_mask`` (batch, S), True/1 for real tokens. Returns (output (..., L, d_v),
    weights (..., L, S)). A query whose keys are all masked gets all-zero weights.
    """
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # (..., L, S)
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device)
    if causal:  # query i may look at keys j <= i only
        allowed = torch.tril(allowed)
    allowed = allowed.expand(scores.shape)
    if key_padding_mask is not None:  # (batch, S) -> (batch, 1.., 1, S)
        padding = key_padding_mask.bool().reshape(key_padding_mask.shape[0], *([1] * (scores.dim() - 2)), -1)
        allowed = allowed & padding
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.nan_to_num(weights, nan=0.0)  # rows with no allowed key
    return weights @ value, weights


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, L, n_heads * d) -> (batch, n_heads, L, d)."""
    batch, length, width = x.shape
    return x.reshape(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, n_heads, L, d) -> (batch, L, n_heads * d)."""
    batch, n_heads, length, d = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * d)


@dataclass(frozen=True)
class Projections:
    """A layer's attention weights in ``torch.nn.Linear``'s layout: ``y = x @ w.T + b``."""

    w_q: torch.Tensor
    b_q: torch.Tensor
    w_k: torch.Tensor
    b_k: torch.Tensor
    w_v: torch.Tensor
    b_v: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor


def rotary_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's angles ``position * theta^(-2i/head_dim)``, each (..., L, head_dim)
    (the half-width frequencies repeated, matching :func:`rotate_half`'s halves)."""
    inverse_frequency = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inverse_frequency  # (..., L, head_dim / 2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a 90-degree turn per pair."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (batch, heads, L, head_dim) by the angles of its positions ((batch, L, head_dim))."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def multi_head_attention(
    x: torch.Tensor,
    projections: Projections,
    n_heads: int,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    n_kv_heads: int | None = None,
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of ``x`` (batch, L, d_model) with ``n_heads`` query heads.

    ``n_kv_heads`` < ``n_heads``: grouped-query attention, each key/value head shared by
    ``n_heads / n_kv_heads`` consecutive query heads. ``rotary``: (cos, sin) of
    :func:`rotary_angles`, applied to queries and keys after their projections.
    Returns (output (batch, L, d_model) after the output projection, weights (batch, heads, L, L))."""
    p = projections
    n_kv_heads = n_kv_heads or n_heads
    head_dim = p.w_q.shape[0] // n_heads
    if p.w_q.shape[0] % n_heads or n_heads % n_kv_heads:
        raise ValueError(f"{p.w_q.shape[0]} query features and {n_kv_heads} key/value heads do not fit {n_heads} heads")
    q = split_heads(x @ p.w_q.T + p.b_q, n_heads)
    k = split_heads(x @ p.w_k.T + p.b_k, n_kv_heads)
    v = split_heads(x @ p.w_v.T + p.b_v, n_kv_heads)
    if q.shape[-1] != head_dim or k.shape[-1] != head_dim:
        raise ValueError(f"keys of width {k.shape[-1]} do not match query heads of width {head_dim}")
    if rotary is not None:
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    group = n_heads // n_kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    heads, weights = scaled_dot_product_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
    return merge_heads(heads) @ p.w_o.T + p.b_o, weights


# --- the models' own layers ---------------------------------------------------------------


SUPPORTED = ("distilbert", "bert", "gpt2", "llama")
CAUSAL = ("gpt2", "llama")


def model_kind(model: Any) -> str:
    kind = getattr(model.config, "model_type", "")
    if kind not in SUPPORTED:
        raise PipelineError(
            f"attention check: model type '{kind}' is not supported (supported: {', '.join(SUPPORTED)})"
        )
    return kind


def n_layers(model: Any) -> int:
    config = model.config
    return int(getattr(config, "n_layers", None) or getattr(config, "num_hidden_layers", None) or config.n_layer)


def n_heads(model: Any) -> int:
    config = model.config
    return int(getattr(config, "n_heads", None) or getattr(config, "num_attention_heads", None) or config.n_head)


def check_index(value: int, count: int, what: str, option: str) -> int:
    """``value`` as a non-negative index (negative counts from the end); a clear error when out of range."""
    if not -count <= value < count:
        raise PipelineError(
            f"{option}: {what} {value} is out of range (the model has {count}: 0-{count - 1}, or -1 for the last)"
        )
    return value % count


def n_kv_heads(model: Any) -> int:
    return int(getattr(model.config, "num_key_value_heads", None) or n_heads(model))


def _backbone(model: Any) -> Any:
    for attribute in ("distilbert", "bert", "transformer", "model"):
        if hasattr(model, attribute):
            return getattr(model, attribute)
    return model


def layer_projections(model: Any, layer: int) -> Projections:
    """The query/key/value/output weights of ``layer``, whatever the architecture stores them as."""
    kind = model_kind(model)
    base = _backbone(model)
    if kind == "distilbert":
        a = base.transformer.layer[layer].attention
        return Projections(a.q_lin.weight, a.q_lin.bias, a.k_lin.weight, a.k_lin.bias, a.v_lin.weight, a.v_lin.bias,
                           a.out_lin.weight, a.out_lin.bias)  # fmt: skip
    if kind == "bert":
        a = base.encoder.layer[layer].attention
        s = a.self
        return Projections(s.query.weight, s.query.bias, s.key.weight, s.key.bias, s.value.weight, s.value.bias,
                           a.output.dense.weight, a.output.dense.bias)  # fmt: skip
    if kind == "llama":  # separate projections, biases only with attention_bias
        a = base.layers[layer].self_attn
        q, k, v, o = a.q_proj, a.k_proj, a.v_proj, a.o_proj
        return Projections(*(t for lin in (q, k, v, o) for t in (lin.weight, _bias(lin))))
    # GPT-2 keeps Q, K and V in one Conv1D (y = x @ W + b, W of shape (in, 3 * out)).
    a = base.h[layer].attn
    w_q, w_k, w_v = a.c_attn.weight.T.chunk(3, dim=0)
    b_q, b_k, b_v = a.c_attn.bias.chunk(3)
    return Projections(w_q, b_q, w_k, b_k, w_v, b_v, a.c_proj.weight.T, a.c_proj.bias)


def _bias(linear: torch.nn.Linear) -> torch.Tensor:
    return linear.bias if linear.bias is not None else torch.zeros(linear.out_features, dtype=linear.weight.dtype)


def _rotary(model: Any, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE angles of a Llama model for the positions the model gives its tokens (0, 1, ... from the start)."""
    config = model.config
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise PipelineError(
            f"attention check: RoPE type '{rope.get('rope_type')}' is not written out here (only default)"
        )
    theta = float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    positions = torch.arange(attention_mask.shape[1])[None].expand(attention_mask.shape[0], -1)
    return rotary_angles(positions, head_dim, theta)


def _attention_input(model: Any, layer: int, x: torch.Tensor) -> torch.Tensor:
    """What the layer's attention reads: the residual stream after the pre-norm (decoders), or the
    hidden states themselves (BERT's post-norm layers)."""
    kind = model_kind(model)
    base = _backbone(model)
    if kind == "gpt2":
        return base.h[layer].ln_1(x)
    if kind == "llama":
        return base.layers[layer].input_layernorm(x)
    return x


def _rest_of_layer(model: Any, layer: int, x: torch.Tensor, attention_out: torch.Tensor) -> torch.Tensor:
    """The layer's output given its attention output, through the layer's own norms and MLP."""
    kind = model_kind(model)
    base = _backbone(model)
    if kind == "distilbert":
        block = base.transformer.layer[layer]
        h = block.sa_layer_norm(attention_out + x)
        return block.output_layer_norm(block.ffn(h) + h)
    if kind == "bert":
        block = base.encoder.layer[layer]
        h = block.attention.output.LayerNorm(attention_out + x)
        return block.output(block.intermediate(h), h)
    if kind == "llama":
        block = base.layers[layer]
        h = x + attention_out  # x is the residual stream; attention ran on input_layernorm(x)
        h = h + block.mlp(block.post_attention_layernorm(h))
        return base.norm(h) if layer == n_layers(model) - 1 else h  # the last hidden state is after norm
    block = base.h[layer]
    h = x + attention_out  # x is the residual stream; attention ran on ln_1(x)
    h = h + block.mlp(block.ln_2(h))
    return base.ln_f(h) if layer == n_layers(model) - 1 else h  # the last hidden state is after ln_f


def verify_layer(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> dict[str, Any]:
    """Recompute ``layer``'s attention with :func:`multi_head_attention` and compare with the model.

    ``model`` must be loaded with eager attention (``attn_implementation="eager"``) so that it
    returns its attention weights. Returns the largest absolute differences of the weights and of
    the layer's output hidden states, and the largest weight any query puts on a later position."""
    kind = model_kind(model)
    layer = check_index(layer, n_layers(model), "layer", "layer")
    model.eval()
    with torch.inference_mode():
        base = _backbone(model)
        outputs = base(
            input_ids=input_ids, attention_mask=attention_mask, output_attentions=True, output_hidden_states=True
        )
        if not outputs.attentions:
            raise PipelineError(
                "attention check: the model returned no attention weights (load it with attn_implementation='eager')"
            )
        x = outputs.hidden_states[layer]
        causal = kind in CAUSAL
        reference_out, reference_weights = multi_head_attention(
            _attention_input(model, layer, x),
            layer_projections(model, layer),
            n_heads(model),
            causal=causal,
            key_padding_mask=attention_mask,
            n_kv_heads=n_kv_heads(model),
            rotary=_rotary(model, attention_mask) if kind == "llama" else None,
        )
        layer_out = _rest_of_layer(model, layer, x, reference_out)
    model_weights = outputs.attentions[layer]
    real = attention_mask.bool()
    query_rows = real[:, None, :, None]  # padding queries are not compared (models differ in what they put there)
    weight_diff = ((reference_weights - model_weights).abs() * query_rows).max().item()
    hidden_diff = ((layer_out - outputs.hidden_states[layer + 1]).abs() * real[..., None]).max().item()
    future = torch.triu(torch.ones(model_weights.shape[-2:], dtype=torch.bool), diagonal=1)
    return {
        "kind": kind,
        "layer": layer,
        "causal": causal,
        "heads": n_heads(model),
        "kv_heads": n_kv_heads(model),
        "max_abs_diff_weights": weight_diff,
        "max_abs_diff_hidden": hidden_diff,
        "max_future_weight": (model_weights * future * query_rows).max().item(),
        "rows_sum_to_one": bool(torch.allclose(model_weights.sum(-1)[real[:, None, :].expand(-1, model_weights.shape[1], -1)],
                                               torch.tensor(1.0), atol=1e-5)),
    }  # fmt: skip


WEIGHT_TOLERANCE = 1e-4  # float32 math in a different order: differences of 1e-7..1e-6 are expected


def check_checkpoint(model_dir: Any, text: str) -> list[dict[str, Any]]:
    """:func:`verify_layer` for every layer of a saved classifier or causal LM, on one text."""
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(model_dir)
    if not (folder / "config.json").exists():
        raise PipelineError(f"--model: '{folder}' has no config.json; not a transformers checkpoint folder")
    if not text.strip():
        raise PipelineError("text: empty; give a review to run through the model")
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    if config.model_type not in SUPPORTED:
        raise PipelineError(
            f"--model: model type '{config.model_type}' is not supported (supported: {', '.join(SUPPORTED)})"
        )
    classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    loader = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    require_safetensors(folder, str(folder), "--model")
    model = loader.from_pretrained(
        str(folder), attn_implementation="eager", trust_remote_code=False, use_safetensors=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)
    batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=limit)
    return [verify_layer(model, batch["input_ids"], batch["attention_mask"], layer) for layer in range(n_layers(model))]
