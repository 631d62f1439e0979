"""GGUF checkpoints as the generator: find the file, check it in seconds, load it through transformers.

``generation.model`` may name a ``.gguf`` file, or a folder (or ``pkg:`` reference) holding one;
``generation.gguf_file`` picks among several. transformers loads it with
``from_pretrained(folder, gguf_file=name)`` (the ``gguf`` package dequantizes the weights to float32)
and builds the tokenizer from the same file, so a GGUF-born decoder takes the same path as any other
from then on, and is saved as safetensors after fine-tuning.

Before the minutes of dequantizing and fine-tuning, :func:`check_gguf` reads the file's header:
a truncated or corrupt file, or an architecture transformers cannot load, is a one-line error that
names the param and the file.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imdb_mlops.common.errors import PipelineError, first_line

KEY = "generation.model"


@dataclass(frozen=True)
class GgufCheckpoint:
    folder: Path
    file: str
    architecture: str


def find_gguf(path: Path, name: str, choice: str | None) -> tuple[Path, str] | None:
    """(folder, file name) when ``path`` is a GGUF checkpoint, else None (a transformers folder).

    A folder with ``config.json`` is a transformers checkpoint unless ``generation.gguf_file`` names
    one of its GGUF files."""
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise PipelineError(
                f"{KEY}: '{name}' is a file but not a .gguf checkpoint; expected a folder, a .gguf or a hub id"
            )
        if choice and choice != path.name:
            raise PipelineError(
                f"generation.gguf_file: '{choice}' does not match generation.model '{name}'; leave it null"
            )
        return path.parent, path.name
    files = sorted(p.name for p in path.glob("*.gguf"))
    if choice:
        if choice not in files:
            found = ", ".join(files) or "none"
            raise PipelineError(f"generation.gguf_file: '{name}' has no '{choice}' (its .gguf files: {found})")
        return path, choice
    if not files or (path / "config.json").exists():
        return None
    if len(files) > 1:
        raise PipelineError(
            f"{KEY}: '{name}' holds {len(files)} .gguf files ({', '.join(files)}); choose one with generation.gguf_file"
        )
    return path, files[0]


def check_gguf(folder: Path, file: str, name: str) -> GgufCheckpoint:
    """Read the header and tensor table of ``folder/file`` (transformers' own reader, well under a
    second; the tensor data is not touched): readable, complete, and of an architecture that
    transformers loads as a causal LM."""
    import struct

    from transformers.integrations.gguf.reader import GgufHeader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    path = folder / file
    try:
        header = GgufHeader.from_file(str(path))
    except ValueError as exc:
        if "general.architecture" in str(exc):
            raise PipelineError(
                f"{KEY}: '{name}' ({file}) has no general.architecture in its header; not a model GGUF"
            ) from None
        raise PipelineError(f"{KEY}: '{name}' ({file}) is not a readable GGUF file: {first_line(exc)}") from None
    except (struct.error, OSError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{KEY}: '{name}' ({file}) is not a readable GGUF file: {first_line(exc)}") from None
    end = header.data_start + max((t.offset + t.nbytes for t in header.tensors), default=0)
    size = path.stat().st_size
    if end > size:
        raise PipelineError(
            f"{KEY}: '{name}' ({file}) is truncated: its tensors end at byte {end:,}, the file has {size:,}"
        )
    architecture = header.architecture
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise PipelineError(
            f"{KEY}: '{name}' ({file}) is a GGUF of architecture '{architecture}', which transformers cannot load "
            f"(it loads: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})"
        )
    return GgufCheckpoint(folder, file, architecture)


@contextlib.contextmanager
def _parsed_once() -> Iterator[None]:
    """While transformers loads one GGUF file: its config, tokenizer and weights each parse the
    whole file again with ``gguf.GGUFReader`` (several seconds apiece for SmolLM2's 49,152-token
    vocabulary), and mapping the tensor names rebuilds ``gguf.get_tensor_name_map`` once per
    submodule (about 400 times). Both are pure functions of their arguments, so they are memoized
    for the load and restored after it (``benchmarks/gguf_load.py``)."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=1)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=4)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def load_gguf(checkpoint: GgufCheckpoint, name: str) -> tuple[object, object]:
    """The causal LM (float32 weights) and the tokenizer stored in the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, file = str(checkpoint.folder), checkpoint.file
    # dequantize=True: plain float32 weights with no quantizer attached. Without it transformers keeps
    # a GGUF quantizer on the model (the Trainer then refuses to fine-tune a "purely quantized model"
    # and save_pretrained writes a quantization_config), or, with the `kernels` package on a GPU,
    # leaves the weights quantized.
    dequantized = GgufConfig(gguf_file=file, dequantize=True)
    try:
        with _parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=file, dtype=torch.float32, quantization_config=dequantized, trust_remote_code=False
            )
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise PipelineError(f"{KEY}: '{name}' ({file}) cannot be loaded as a causal LM: {first_line(exc)}") from None
    return model, tokenizer
