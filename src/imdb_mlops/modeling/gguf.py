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
    """Read the header and tensor table of ``folder/file``: readable, complete, and of an
    architecture that transformers loads as a causal LM."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    path = folder / file
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except KeyError:
        raise PipelineError(
            f"{KEY}: '{name}' ({file}) has no general.architecture in its header; not a model GGUF"
        ) from None
    except (ValueError, OSError, IndexError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{KEY}: '{name}' ({file}) is not a readable GGUF file: {first_line(exc)}") from None
    if end > path.stat().st_size:
        raise PipelineError(
            f"{KEY}: '{name}' ({file}) is truncated: its tensors end at byte {end:,}, the file has {path.stat().st_size:,}"
        )
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise PipelineError(
            f"{KEY}: '{name}' ({file}) is a GGUF of architecture '{architecture}', which transformers cannot load "
            f"(it loads: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})"
        )
    return GgufCheckpoint(folder, file, architecture)


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
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=file, dtype=torch.float32, quantization_config=dequantized, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise PipelineError(f"{KEY}: '{name}' ({file}) cannot be loaded as a causal LM: {first_line(exc)}") from None
    return model, tokenizer
