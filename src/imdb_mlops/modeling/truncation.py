"""How a review longer than the token budget is cut: shared by training data and the served model.

Pure Python (no heavy imports), because the registered MLflow model imports it at serving time:
the ids a served model sees must be cut exactly as the ids it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def special_token_layout(encode: Callable[[str, bool], Sequence[int]]) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a text ([CLS] ... [SEP]: 1, 1).

    ``encode(text, add_special_tokens)`` returns the ids of ``text``.
    """
    bare, full = list(encode("a", False)), list(encode("a", True))
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return start, len(full) - start - len(bare)
    raise ValueError("the tokenizer adds special tokens in a way that cannot be cut around")


def head_tokens(max_length: int, n_prefix: int, n_suffix: int, head_share: float | None) -> int | None:
    """Tokens kept from the start of the body with head+tail cutting; None for plain head cutting."""
    if head_share is None:
        return None
    return round((max_length - n_prefix - n_suffix) * head_share)


def cut(ids: list[int], max_length: int, n_prefix: int, n_suffix: int, head: int | None) -> list[int]:
    """``ids`` (special tokens included) cut to ``max_length``: the end of the body is dropped
    (``head`` None), or its middle, keeping ``head`` tokens from the start and the rest from the end."""
    n = len(ids)
    if n <= max_length:
        return ids
    keep = max_length - n_prefix - n_suffix
    body = ids[n_prefix : n - n_suffix]
    body = body[:keep] if head is None else body[:head] + body[len(body) - (keep - head) :]
    return ids[:n_prefix] + body + ids[n - n_suffix :]


def served_tokenizer(folder: Path) -> Any:
    """The served model's tokenizer: ``folder/tokenizer.json`` read by ``tokenizers`` (no transformers,
    no torch), its own truncation and padding off, as cutting and padding are done here."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
