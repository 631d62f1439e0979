"""Loading pretrained tokenizers (and later models) from a hub id or a local folder.

One call path for both: ``from_pretrained(<hub id or folder>)``, with ``trust_remote_code`` off.
A hub id is probed first so that an unreachable hub fails within ``hub.timeout_s`` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.config import HubConfig
from imdb_mlops.errors import PipelineError
from imdb_mlops.hub import ensure_hub_reachable, local_path


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


def resolve_pretrained(name: str, hub: HubConfig, key: str = "model.name") -> str:
    """The argument for ``from_pretrained``: a checked local folder, or a reachable hub id."""
    path = local_path(name, key)
    if path is None:
        ensure_hub_reachable(key, name, hub.timeout_s)
        return name
    if not path.is_dir():
        raise PipelineError(f"{key}: '{name}' is a file; expected a checkpoint folder or a hub id")
    return str(path)


def load_tokenizer(name: str, hub: HubConfig, key: str = "model.name") -> Any:
    """A fast tokenizer for ``name``; a clear error when the folder has none."""
    return tokenizer_from(resolve_pretrained(name, hub, key), name, key)


def tokenizer_from(source: str, name: str, key: str = "model.name") -> Any:
    """A fast tokenizer from an already resolved ``source`` (see :func:`resolve_pretrained`)."""
    from transformers import AutoTokenizer

    if Path(source).is_dir() and not any((Path(source) / f).exists() for f in TOKENIZER_FILES):
        # transformers 5 would build an empty-vocabulary tokenizer from config.json alone.
        raise PipelineError(
            f"{key}: '{name}' has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer next to the model (tokenizer.save_pretrained)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as exc:
        if Path(source).is_dir():
            raise PipelineError(
                f"{key}: '{name}' has no usable tokenizer (tokenizer.json or vocab.txt with "
                f"tokenizer_config.json expected): {str(exc).splitlines()[0][:200]}"
            ) from None
        raise PipelineError(f"{key}: could not load tokenizer '{name}': {str(exc).splitlines()[0][:200]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"{key}: '{name}' has only a slow (Python) tokenizer; a fast tokenizer is required")
    return tokenizer


def load_config(name: str, hub: HubConfig, key: str = "model.name") -> Any:
    from transformers import AutoConfig

    source = resolve_pretrained(name, hub, key)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{key}: '{name}' has no usable config.json: {str(exc).splitlines()[0][:200]}") from None


def unpadded_backend(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's Rust backend with padding and truncation switched off.

    Some ``tokenizer.json`` files ship them switched on (all-MiniLM-L6-v2 pads and cuts every text
    to 128 tokens); the pipeline cuts reviews itself (:mod:`imdb_mlops.truncation`) and pads per batch."""
    import copy

    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    return backend
