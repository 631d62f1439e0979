"""The sentiment classifier as a model: loading a pretrained checkpoint for fine-tuning (with the
pipeline's two labels), loading a trained one for inference, and predicting P(positive)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.labels import LABELS
from imdb_mlops.modeling.pretrained import checkpoint_config, require_safetensors

KEY = "model.name"
console = Console(stderr=True)


def load_pretrained_classifier(source: str, name: str, vocab_size: int, attention_dropout: float | None = None) -> Any:
    """A 2-label classifier with labels named negative/positive; clear errors for bad folders."""
    from transformers import AutoModelForSequenceClassification

    config = checkpoint_config(source, name, KEY)
    architectures = config.architectures or []
    if any(a.endswith("ForSequenceClassification") for a in architectures) and config.num_labels != 2:
        raise PipelineError(
            f"model.name: '{name}' is a classifier with {config.num_labels} labels "
            f"({', '.join(map(str, config.id2label.values()))}); this pipeline trains 2 (negative, positive). "
            "Start from its base checkpoint instead"
        )
    if attention_dropout is not None:
        for attribute in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
            if hasattr(config, attribute):
                setattr(config, attribute, attention_dropout)
    config.num_labels = 2
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {label: i for i, label in enumerate(LABELS)}
    try:
        require_safetensors(source, name, "model.name")
        model = AutoModelForSequenceClassification.from_pretrained(
            source, config=config, trust_remote_code=False, use_safetensors=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PipelineError(
            f"model.name: '{name}' cannot be loaded as a sequence classifier: {first_line(exc)}"
        ) from None
    embeddings = model.get_input_embeddings().num_embeddings
    if vocab_size > embeddings:
        raise PipelineError(
            f"model.name: tokenizer has {vocab_size} tokens but the model's embedding table has {embeddings}; "
            "the tokenizer does not belong to this checkpoint"
        )
    return model


def freeze_bottom(model: Any, frozen_layers: int | None) -> int:
    """Turn off the gradient of the embeddings and the bottom ``frozen_layers`` encoder layers
    (``train.frozen_layers``; null leaves everything trainable). Returns the trainable parameters."""
    if frozen_layers is not None:
        layers = encoder_layers(model)
        if frozen_layers > len(layers):
            raise PipelineError(
                f"train.frozen_layers: {frozen_layers} exceeds the model's {len(layers)} encoder layers"
            )
        for module in [model.base_model.embeddings, *layers[:frozen_layers]]:  # word embeddings included
            for parameter in module.parameters():
                parameter.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encoder_layers(model: Any) -> Any:
    """The stack of encoder layers of a BERT- or DistilBERT-like classifier (its ModuleList with
    one entry per hidden layer)."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layers", None)
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise PipelineError(f"train.frozen_layers: cannot find the encoder layers of {type(model).__name__}")


def load_trained_classifier(model_dir: Path, attn_implementation: str | None = None) -> tuple[Any, Any]:
    """A classifier checkpoint written by the train stage, in eval mode, and its tokenizer.
    ``attn_implementation="eager"`` gives plain MatMul/Softmax attention (ONNX export, attention maps)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise PipelineError(f"{model_dir}: no trained model (config.json missing); run the train stage first")
    require_safetensors(model_dir, str(model_dir), "model")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir),
            trust_remote_code=False,
            use_safetensors=True,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}),
        )
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{model_dir}: cannot load the trained model: {first_line(exc)}") from None
    return model.eval(), tokenizer


def predict_positive(
    model: Any, tokenizer: Any, input_ids: list[list[int]], batch_size: int, what: str = "reviews"
) -> np.ndarray:
    """P(positive) per review; batches of similar length, dynamically padded."""
    import torch
    from rich.progress import track

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    order = np.argsort([len(ids) for ids in input_ids], kind="stable")
    probs = np.empty(len(input_ids), dtype=np.float64)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for batch in track(batches, description=f"Predicting {what}", console=console, transient=True):
            padded = tokenizer.pad({"input_ids": [input_ids[i] for i in batch]}, return_tensors="pt").to(device)
            logits = model(**padded).logits.float()
            probs[batch] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
    return probs
