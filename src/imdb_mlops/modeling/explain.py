"""``imdb-mlops explain``: what the classifier's ``[CLS]`` position attends to, as tables and heatmaps.

The classifier decides from the last layer's hidden state at ``[CLS]`` (position 0), and that
state is a weighted average (attention) of every position's values. :func:`explain` runs one review
through a trained checkpoint with eager attention, prints the prediction and the tokens ``[CLS]``
weighs most in a layer (averaged over heads, or per head), and writes one heatmap PNG per layer
(the attention matrix averaged over heads, and per head on request). Reviews are cut exactly as
the model was trained (``tokenize.*``); a cut review says which tokens were dropped.

Attention weights show where information is *routed from*, not why the model decided: read them
as a picture of the mechanism, not as an attribution.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.labels import LABELS
from imdb_mlops.config import TokenizeConfig
from imdb_mlops.modeling.attention import check_index, n_heads, n_layers
from imdb_mlops.modeling.pretrained import checkpoint_config, require_safetensors, unpadded_backend
from imdb_mlops.modeling.truncation import cut, head_tokens, special_token_layout
from imdb_mlops.reporting import figures

ENCODERS = ("distilbert", "bert")  # classifiers whose [CLS] (position 0) feeds the head


@dataclass
class Attended:
    """One review through the model: tokens, prediction, attention of every layer."""

    tokens: list[str]
    positive_probability: float
    attentions: np.ndarray  # (layers, heads, tokens, tokens)
    n_tokens: int  # before truncation
    truncation: str | None  # what was cut, or None

    @property
    def label(self) -> str:
        return LABELS[int(self.positive_probability >= 0.5)]

    @property
    def probability(self) -> float:
        p = self.positive_probability
        return p if p >= 0.5 else 1 - p


def load_explainable(model_dir: Path) -> tuple[Any, Any]:
    """A classifier checkpoint with eager attention (the only kind that returns its weights)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not model_dir.is_dir():
        raise PipelineError(f"--model: '{model_dir}' is not a folder, a registry version or an alias")
    if not (model_dir / "config.json").exists():
        onnx = sorted(p.name for p in model_dir.glob("*.onnx"))
        if onnx:
            raise PipelineError(
                f"--model: '{model_dir}' is an ONNX export ({', '.join(onnx)}), which gives no attention outputs; "
                "use the PyTorch checkpoint (models/classifier)"
            )
        raise PipelineError(f"--model: '{model_dir}' has no config.json; not a transformers checkpoint")
    config = checkpoint_config(str(model_dir), str(model_dir), "--model")
    if config.model_type not in ENCODERS:
        raise PipelineError(
            f"--model: '{model_dir}' is a {config.model_type} checkpoint; explain reads the [CLS] attention of "
            f"{' and '.join(ENCODERS)} classifiers"
        )
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
        raise PipelineError(
            f"--model: '{model_dir}' is not a trained classifier (architectures: {', '.join(config.architectures or ['none'])})"
        )
    require_safetensors(model_dir, str(model_dir), "--model")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), config=config, attn_implementation="eager", trust_remote_code=False, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"--model: cannot load '{model_dir}' as a classifier: {first_line(exc)}") from None
    return model.eval(), tokenizer


def attend(model: Any, tokenizer: Any, text: str, tokenize: TokenizeConfig) -> Attended:
    """Run ``text`` (cut as in training) through ``model``; every layer's attention weights."""
    import torch

    if not text.strip():
        raise PipelineError("text: the review is empty; give a few words to explain")
    encode = unpadded_backend(tokenizer).encode_batch_fast([text], add_special_tokens=True)[0].ids
    n_prefix, n_suffix = special_token_layout(lambda t, special: tokenizer(t, add_special_tokens=special)["input_ids"])
    share = tokenize.head_share if tokenize.truncation == "head_tail" else None
    head = head_tokens(tokenize.max_length, n_prefix, n_suffix, share)
    ids = cut(list(encode), tokenize.max_length, n_prefix, n_suffix, head)
    note = None
    if len(encode) > tokenize.max_length:
        body = len(encode) - n_prefix - n_suffix
        budget = tokenize.max_length - n_prefix - n_suffix
        if head is None:
            note = (f"the review has {len(encode)} tokens; the model reads {tokenize.max_length}: "
                    f"its first {budget} tokens (tokenize.truncation head); tokens {budget + 1}-{body} were cut")  # fmt: skip
        else:
            kept_tail = budget - head
            note = (f"the review has {len(encode)} tokens; the model reads {tokenize.max_length}: the first {head} and "
                    f"the last {kept_tail} (tokenize.truncation head_tail); tokens {head + 1}-{body - kept_tail} were cut")  # fmt: skip
    with torch.inference_mode():
        out = model(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            output_attentions=True,
        )
    if not out.attentions or out.attentions[0] is None:
        raise PipelineError("--model: the checkpoint returned no attention weights; it cannot be explained this way")
    probs = torch.softmax(out.logits.float(), dim=-1)[0]
    attentions = torch.stack([a[0] for a in out.attentions]).float().numpy()
    return Attended(tokenizer.convert_ids_to_tokens(ids), float(probs[1]), attentions, len(encode), note)


def cls_attention(attended: Attended, layer: int, head: int | None = None) -> np.ndarray:
    """Weights of the ``[CLS]`` query (row 0) over all tokens: one head, or the mean of the heads."""
    rows = attended.attentions[layer, :, 0, :]
    return rows[head] if head is not None else rows.mean(axis=0)


def top_tokens(attended: Attended, weights: np.ndarray, k: int) -> list[dict[str, Any]]:
    order = np.argsort(-weights, kind="stable")[:k]
    return [{"position": int(i), "token": attended.tokens[i], "weight": round(float(weights[i]), 5)} for i in order]


def explain(
    model_dir: Path,
    text: str,
    tokenize: TokenizeConfig,
    out_dir: Path | None,
    layer: int = -1,
    head: int | None = None,
    per_head: bool = False,
    top: int = 10,
) -> dict[str, Any]:
    """Prediction, ``[CLS]``'s most attended tokens and (with ``out_dir``) heatmap PNGs."""
    model, tokenizer = load_explainable(model_dir)
    layers, heads = n_layers(model), n_heads(model)
    layer = check_index(layer, layers, "layer", "--layer")
    if head is not None:
        head = check_index(head, heads, "head", "--head")
    attended = attend(model, tokenizer, text, tokenize)
    report: dict[str, Any] = {
        "label": attended.label,
        "probability": round(attended.probability, 5),
        "positive_probability": round(attended.positive_probability, 5),
        "n_tokens": attended.n_tokens,
        "tokens_read": len(attended.tokens),
        "truncation": attended.truncation,
        "layer": layer,
        "layers": layers,
        "heads": heads,
        "cls_top": top_tokens(attended, cls_attention(attended, layer, head), top),
        "head": head,
    }
    if per_head:
        report["cls_top_per_head"] = {
            h: top_tokens(attended, cls_attention(attended, layer, h), top) for h in range(heads)
        }
    if out_dir is not None:
        report["figures"] = [str(p) for p in write_heatmaps(attended, out_dir, per_head or head is not None)]
    return report


def write_heatmaps(attended: Attended, out_dir: Path, per_head: bool) -> list[Path]:
    """``layer<L>.png`` (mean over heads) for every layer, and ``layer<L>_head<H>.png`` when asked;
    written to a temporary folder and moved into place together."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    written = []
    try:
        for layer in range(attended.attentions.shape[0]):
            title = f"layer {layer}, mean of {attended.attentions.shape[1]} heads — {attended.label} {attended.probability:.2f}"
            figures.attention_heatmap(
                attended.attentions[layer].mean(axis=0), attended.tokens, staging / f"layer{layer}.png", title
            )
            written.append(f"layer{layer}.png")
            for head in range(attended.attentions.shape[1]) if per_head else ():
                figures.attention_heatmap(attended.attentions[layer, head], attended.tokens,
                                          staging / f"layer{layer}_head{head}.png", f"layer {layer}, head {head}")  # fmt: skip
                written.append(f"layer{layer}_head{head}.png")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in written:
            (staging / name).replace(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in written]
