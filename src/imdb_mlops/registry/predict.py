"""Predictions from registered models: the served pyfunc itself, loaded once, fed in requests no
larger than it accepts. Used by the promotion gate, batch scoring and the CLI."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.labels import LABELS
from imdb_mlops.config import RegistryConfig
from imdb_mlops.registry.versions import load_pyfunc

console = Console(stderr=True)
PREDICTION_COLUMNS = ["label", "probability", "positive_probability"]


def predict_chunked(
    model: Any,
    texts: list[str],
    chunk: int,
    truncate_chars: int | None = None,
    what: str = "reviews",
    show_progress: bool = True,
) -> pd.DataFrame:
    """Predictions in requests of at most ``chunk`` texts (the served model's limit), with a progress
    bar unless ``show_progress`` is off; ``truncate_chars`` cuts over-long reviews to their start instead
    of having them refused."""
    frames = []
    with Progress(console=console, transient=True, disable=not show_progress) as progress:
        task = progress.add_task(f"Scoring {what}", total=len(texts))
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            if truncate_chars is not None:
                part = [t[:truncate_chars] for t in part]
            frames.append(model.predict(pd.DataFrame({"text": part})))
            progress.advance(task, len(part))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


def predict_labels(model_uri: str, texts: list[str], cfg: RegistryConfig, what: str) -> np.ndarray:
    """0/1 predictions of a registered model on ``texts``."""
    frame = predict_chunked(load_pyfunc(model_uri), texts, cfg.max_texts_per_request, cfg.max_text_chars, what)
    return (frame["label"] == LABELS[1]).to_numpy().astype(int)


def served_choice(model: Any) -> dict[str, Any] | None:
    """Which variant a loaded classifier pyfunc runs and why (its self-measurement at load); None
    for models that do not choose (older versions, other pyfuncs)."""
    from mlflow.exceptions import MlflowException

    try:
        return getattr(model.unwrap_python_model(), "choice", None)
    except MlflowException:  # a pyfunc flavour without a Python model
        return None


def predict_texts(model_uri: str, texts: list[str], chunk: int) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Label and probability per text, from a registered (or any pyfunc) model loaded once, and
    the model's variant choice (:func:`served_choice`)."""
    from mlflow.exceptions import MlflowException

    model = load_pyfunc(model_uri)
    try:
        return predict_chunked(model, texts, chunk), served_choice(model)
    except MlflowException as exc:
        raise PipelineError(f"predict: {exc.message.splitlines()[-1]}") from None


def require_sentiment(sentiment: str) -> None:
    """A one-line error naming ``--sentiment`` unless it is one of the labels."""
    from imdb_mlops.modeling.textgen import GenerationRequestError, check_sentiment

    try:
        check_sentiment(sentiment)
    except GenerationRequestError as exc:
        raise PipelineError(f"--{exc}") from None


def generate_reviews(
    model_uri: str, prompt: str, sentiment: str, n: int, request_params: dict[str, Any]
) -> pd.DataFrame:
    """``n`` reviews of ``sentiment`` starting with ``prompt`` from a registered generator."""
    from mlflow.exceptions import MlflowException
    from transformers.utils import logging as transformers_logging

    require_sentiment(sentiment)
    transformers_logging.disable_progress_bar()
    generator = load_pyfunc(model_uri)
    frame = pd.DataFrame({"prompt": [prompt] * n, "sentiment": [sentiment] * n})
    try:
        return generator.predict(frame, params=request_params)
    except MlflowException as exc:
        raise PipelineError(f"generate: {exc.message.splitlines()[-1]}") from None
