"""The registered review generator, written as code (MLflow models-from-code; nothing pickled).

The generate stage logs this file as the pyfunc's ``python_model`` with one artifact,
``generator``: the fine-tuned causal LM as safetensors with its tokenizer (control codes included)
and ``generation_settings.json`` (the decoding settings the stage used, the defaults here).

Input: a DataFrame (or list of dicts) with columns ``prompt`` and ``sentiment``
(``positive``/``negative``), one row per review wanted. Params (all optional): ``max_new_tokens``,
``strategy`` (sample/greedy), ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``seed``,
``guidance_scale`` (classifier-free guidance against the opposite code; 1 = off). Decoding runs in
bf16 autocast where the serving machine has native bf16 (``decoding.precision: auto``).
Output: a DataFrame with ``prompt``, ``sentiment`` and ``text`` (the prompt and its continuation).
A bad request (unknown sentiment, bad decoding value, too long) is refused with
``INVALID_PARAMETER_VALUE`` (HTTP 400 from ``mlflow models serve``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

warnings.filterwarnings("ignore", message=r"(?s).*Add type hints to the `predict` method")


class GeneratorModel(PythonModel):
    def load_context(self, context: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(context.artifacts["generator"])
        self.settings = json.loads((folder / "generation_settings.json").read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=False, use_safetensors=True)
        self.model = model.to(device).eval()

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        from pydantic import ValidationError

        from imdb_mlops.config import DecodingConfig
        from imdb_mlops.modeling.textgen import GenerationRequestError, check_sentiment, generate_texts

        frame = pd.DataFrame(model_input) if not isinstance(model_input, pd.DataFrame) else model_input
        missing = [c for c in ("prompt", "sentiment") if c not in frame.columns]
        if missing:
            raise _rejected(f"missing column(s) {', '.join(missing)}; expected prompt and sentiment")
        if len(frame) > self.settings.get("max_prompts_per_request", 64):
            raise _rejected(f"request too large: {len(frame)} rows, at most {self.settings['max_prompts_per_request']}")
        prompts = ["" if p is None else str(p) for p in frame["prompt"]]
        sentiments = [str(s) for s in frame["sentiment"]]
        decoding_values = {**self.settings["decoding"], **{k: v for k, v in (params or {}).items() if v is not None}}
        try:
            for sentiment in sentiments:
                check_sentiment(sentiment)
            decoding = DecodingConfig.model_validate(_typed(decoding_values))
            texts, _ = generate_texts(self.model, self.tokenizer, list(zip(sentiments, prompts, strict=True)), decoding)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            if first["type"] == "value_error":
                raise _rejected(f"{where}: {first['ctx']['error']}") from None
            raise _rejected(f"{where}: {first['msg'].lower()} (got {first.get('input')!r})") from None
        except GenerationRequestError as exc:
            raise _rejected(str(exc)) from None
        return pd.DataFrame({"prompt": prompts, "sentiment": sentiments, "text": texts})


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """Params arrive as JSON numbers (or numpy scalars): ints where the config wants ints."""
    out = dict(values)
    for key in ("max_new_tokens", "top_k", "seed", "batch_size"):
        if key in out and isinstance(out[key], float) and float(out[key]).is_integer():
            out[key] = int(out[key])
    for key in ("temperature", "top_p", "repetition_penalty", "guidance_scale"):
        if key in out and isinstance(out[key], int):
            out[key] = float(out[key])
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


def _rejected(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


mlflow.models.set_model(GeneratorModel())
