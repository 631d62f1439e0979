"""The registered model, written as code (MLflow models-from-code): raw reviews in, label and
probability out, computed by the fastest variant shipped for the machine it loads on (ONNX Runtime
or, where bf16 is native, PyTorch in bf16): a short self-measurement at load picks it, and a line on
stderr says which (``model.unwrap_python_model().choice`` holds the figures). Nothing is pickled.

The register stage logs this file as the pyfunc's ``python_model`` with two artifacts:

- ``onnx``: the export folder (shipped ``model.<variant>.onnx`` files and ``tokenizer.json``);
- ``pytorch``: the trained checkpoint (safetensors), only when the PyTorch bf16 variant shipped;
- ``serving_config``: JSON written by the register stage (variants, truncation, request limits).

Input: a list of strings, or a DataFrame whose first (only) column holds the texts.
Output: a DataFrame with ``label`` ("negative"/"positive"), ``probability`` (of that label) and
``positive_probability``. Requests with too many texts or too long a text are refused with an
``INVALID_PARAMETER_VALUE`` error, which ``mlflow models serve`` answers with HTTP 400.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from imdb_mlops.modeling.capabilities import capability_tags, detect
from imdb_mlops.modeling.runtimes import choose_variant, onnx_gpu, predict_logits
from imdb_mlops.modeling.truncation import cut, served_tokenizer
from imdb_mlops.modeling.variant_gate import positive_probabilities

# The signature is logged explicitly; MLflow's advice to derive one from type hints is noise here.
warnings.filterwarnings("ignore", message=r"(?s).*Add type hints to the `predict` method")


class RequestRejected(MlflowException):
    """A request refused before any work (HTTP 400). The scoring server prefixes an error's message
    with the whole request ("Failed to predict data '...'"); this one keeps only its own words, so
    a 10 MB request is not echoed back to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value.rsplit("\nError: ", 1)[-1]


class SentimentModel(PythonModel):
    """Tokenize (cut as in training), run the variant fastest on this machine, softmax."""

    def load_context(self, context: Any) -> None:
        settings = json.loads(Path(context.artifacts["serving_config"]).read_text())
        onnx_dir = Path(context.artifacts["onnx"])
        torch_dir = Path(context.artifacts["pytorch"]) if "pytorch" in context.artifacts else None
        caps = detect()
        probe = (settings["probe_batch"], settings["probe_tokens"], settings["vocab_size"])
        self.runner, self.choice = choose_variant(
            settings["shipped"], settings["variant"], (onnx_dir, torch_dir), probe, caps, onnx_gpu()
        )
        self.choice["cpu_flags"] = capability_tags(caps)["cpu.flags"]
        speeds = ", ".join(f"{v} {s:.0f}" for v, s in self.choice["texts_per_s"].items())
        print(
            f"imdb-mlops classifier: serving the {self.choice['variant']} variant on {self.choice['device']} "
            f"({self.choice['rule']}{'; texts/s ' + speeds if speeds else ''}; CPU flags {self.choice['cpu_flags']})",
            file=sys.stderr,
            flush=True,
        )
        self.tokenizer = served_tokenizer(onnx_dir)
        self.settings = settings

    # No type hints here: MLflow would derive a (list-based) signature from them; ours is logged explicitly.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        texts = as_texts(model_input)
        check_request(texts, self.settings["max_texts_per_request"], self.settings["max_text_chars"])
        positive = self.positive_probabilities(texts)
        labels = self.settings["labels"]
        predicted = (positive >= 0.5).astype(int)
        return pd.DataFrame(
            {
                "label": [labels[i] for i in predicted],
                "probability": np.where(predicted == 1, positive, 1.0 - positive),
                "positive_probability": positive,
            }
        )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, cut to the trained length as the tokenize stage cut them."""
        s = self.settings
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=True)
        return [cut(e.ids, s["max_length"], s["n_prefix"], s["n_suffix"], s["head_tokens"]) for e in encodings]

    def positive_probabilities(self, texts: list[str]) -> np.ndarray:
        logits = predict_logits(
            self.runner, self.token_ids(texts), self.settings["batch_size"], self.settings["pad_token_id"]
        )
        return positive_probabilities(logits)


def as_texts(model_input: Any) -> list[str]:
    """The review texts of a request: a list/array/Series of strings or a one-column DataFrame."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] != 1:
            raise RequestRejected(
                f"expected one column of review texts, got {model_input.shape[1]} columns "
                f"({', '.join(map(str, model_input.columns))})"
            )
        values = model_input.iloc[:, 0].tolist()
    elif isinstance(model_input, (pd.Series, np.ndarray)):
        values = np.asarray(model_input).reshape(-1).tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise RequestRejected(f"text {index}: expected a string, got {type(value).__name__}")
    return values


def check_request(texts: list[str], max_texts: int, max_chars: int) -> None:
    """Refuse empty, blank and oversized requests before any work is done (as ``imdb-mlops predict``)."""
    if not texts:
        raise RequestRejected("no texts were sent: the request needs at least one review")
    if len(texts) > max_texts:
        raise RequestRejected(f"request too large: {len(texts)} texts, at most {max_texts} per request")
    for index, text in enumerate(texts):
        if not text.strip():
            raise RequestRejected(f"text {index} is empty; a review needs words to be classified")
        if len(text) > max_chars:
            raise RequestRejected(f"text {index} too long: {len(text):,} characters, at most {max_chars:,}")


mlflow.models.set_model(SentimentModel())
