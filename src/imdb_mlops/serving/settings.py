"""What the two served models need besides their files, decided when they are registered: the
shipped variants and how one is picked, truncation and request limits (classifier), decoding
defaults (generator), and their MLflow signatures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import read_json
from imdb_mlops.common.labels import LABELS
from imdb_mlops.config import DecodingConfig, GenerationConfig, RegistryConfig, TokenizeConfig
from imdb_mlops.modeling.textgen import CONTROL_CODES

SERVING_DIR = Path(__file__).resolve().parent
CLASSIFIER_MODEL_FILE = SERVING_DIR / "classifier_model.py"
GENERATOR_MODEL_FILE = SERVING_DIR / "generator_model.py"
CLASSIFIER_REQUIREMENTS = ("mlflow", "onnxruntime-gpu", "tokenizers", "numpy", "pandas", "scipy")
TORCH_REQUIREMENTS = ("torch", "transformers", "safetensors")  # when a PyTorch variant is shipped
GENERATOR_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "pandas", "pydantic")
CLASSIFIER_INPUT_EXAMPLE = pd.DataFrame({"text": ["an awful film", "a delight"]})
GENERATOR_INPUT_EXAMPLE = pd.DataFrame({"prompt": ["This movie"], "sentiment": ["positive"]})
MAX_PROMPTS_PER_REQUEST = 64
PROBE_BATCH, PROBE_TOKENS = 8, 128  # about 0.1 s per call for MiniLM fp32 on 2 cores


def check_variant(shipped: list[str], requested: str) -> str:
    """``registry.variant`` checked against what the export stage shipped."""
    if requested != "auto" and requested not in shipped:
        raise PipelineError(
            f"registry.variant: '{requested}' was not shipped by the export stage (shipped: {', '.join(shipped)})"
        )
    return requested


def classifier_settings(
    cfg: RegistryConfig, tok: TokenizeConfig, onnx_dir: Path, onnx_report: dict[str, Any]
) -> dict[str, Any]:
    """The served classifier's ``serving_config.json``: variants, truncation, request limits, and the
    probe that picks the fastest variant where the model loads."""
    from imdb_mlops.modeling.truncation import head_tokens, served_tokenizer, special_token_layout

    export_info = read_json(onnx_dir / "export.json", "run the export stage first (dvc repro export)")
    shipped = [v for v in export_info["shipped"] if v.startswith("torch_") or (onnx_dir / f"model.{v}.onnx").exists()]
    if not shipped:
        raise PipelineError(f"{onnx_dir}: no shipped variant found (model.<variant>.onnx)")
    if not (onnx_dir / "tokenizer.json").exists():
        raise PipelineError(f"{onnx_dir}/tokenizer.json: missing; the served model needs the fast tokenizer file")
    variant = check_variant(shipped, cfg.variant)
    tokenizer = served_tokenizer(onnx_dir)
    n_prefix, n_suffix = special_token_layout(
        lambda text, special: tokenizer.encode(text, add_special_tokens=special).ids
    )
    share = tok.head_share if tok.truncation == "head_tail" else None
    return {
        "labels": export_info.get("labels", list(LABELS)),
        "shipped": shipped,
        "variant": variant,
        # The self-measurement at load: batches of this shape, random token ids.
        "probe_batch": PROBE_BATCH,
        "probe_tokens": min(tok.max_length, PROBE_TOKENS),
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "max_length": tok.max_length,
        "n_prefix": n_prefix,
        "n_suffix": n_suffix,
        "head_tokens": head_tokens(tok.max_length, n_prefix, n_suffix, share),
        "pad_token_id": pad_token_id(tokenizer, onnx_dir / "tokenizer_config.json"),
        "batch_size": cfg.batch_size,
        "max_texts_per_request": cfg.max_texts_per_request,
        "max_text_chars": cfg.max_text_chars,
        "parity_provider": onnx_report.get("provider"),
    }


def pad_token_id(tokenizer: Any, config: Path) -> int:
    """The id of the pad token ``tokenizer_config.json`` names (0 where it names none)."""
    pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token") if config.exists() else None
    if isinstance(pad, dict):  # an AddedToken written out: {"content": "[PAD]", ...}
        pad = pad.get("content")
    found = tokenizer.token_to_id(pad) if isinstance(pad, str) else None
    return int(found) if found is not None else 0


def classifier_signature() -> Any:
    """One unnamed column of review texts in: ``{"inputs": [...]}``, ``dataframe_split`` /
    ``dataframe_records`` with one column (whatever it is called), a Series, an array or a
    one-column DataFrame all fit it. Label and probabilities out.

    The input is an object tensor, not a ``string`` column, because MLflow converts a ``string``
    column's values before the model sees them (``null`` became the text "None", ``123`` the text
    "123") and keeps only the first column of a wider frame; an object tensor reaches ``predict``
    as sent, so non-strings are refused there, and extra columns by MLflow, each with HTTP 400."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(object), (-1,))]),
        outputs=Schema(
            [ColSpec("string", "label"), ColSpec("double", "probability"), ColSpec("double", "positive_probability")]
        ),
    )


def generator_settings(cfg: GenerationConfig) -> dict[str, Any]:
    """Defaults of the registered generator: the decoding settings the stage used."""
    return {
        "decoding": cfg.decoding.model_dump(),
        "control_codes": CONTROL_CODES,
        "max_prompts_per_request": MAX_PROMPTS_PER_REQUEST,
    }


def generator_signature(decoding: DecodingConfig) -> Any:
    """``prompt`` + ``sentiment`` in, the text out; decoding settings as request params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "sentiment")]),
        outputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "sentiment"), ColSpec("string", "text")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", decoding.max_new_tokens),
                ParamSpec("strategy", "string", decoding.strategy),
                ParamSpec("temperature", "double", float(decoding.temperature)),
                ParamSpec("top_k", "long", decoding.top_k),
                ParamSpec("top_p", "double", float(decoding.top_p)),
                ParamSpec("repetition_penalty", "double", float(decoding.repetition_penalty)),
                ParamSpec("seed", "long", decoding.seed),
                ParamSpec("guidance_scale", "double", float(decoding.guidance_scale)),
            ]
        ),
    )
