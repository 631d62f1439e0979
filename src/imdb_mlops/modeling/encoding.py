"""Review text -> token ids, exactly as the classifier is trained on them.

:class:`Encoder` is the batch function of the tokenize stage (picklable, so ``datasets.map`` can
run it in several processes) and is what the generate stage uses to score generated reviews:
reviews longer than ``tokenize.max_length`` are cut at the end (``head``) or in the middle
(``head_tail``; :mod:`imdb_mlops.modeling.truncation`), never padded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import TokenizeConfig
from imdb_mlops.modeling.pretrained import unpadded_backend
from imdb_mlops.modeling.truncation import cut, head_tokens, special_token_layout


class Encoder:
    """Picklable batch function for ``datasets.map`` (so ``num_proc > 1`` works)."""

    def __init__(self, tokenizer: Any, config: TokenizeConfig) -> None:
        self.tokenizer = tokenizer
        self.backend = unpadded_backend(tokenizer)  # no padding/truncation the tokenizer.json may switch on
        self.max_length = config.max_length
        # Special tokens the tokenizer wraps every text in ([CLS] ... [SEP] for BERT).
        try:
            self.n_prefix, self.n_suffix = special_token_layout(
                lambda text, special: tokenizer(text, add_special_tokens=special)["input_ids"]
            )
        except ValueError:
            raise PipelineError("model.name: tokenizer adds special tokens in a way this stage cannot handle") from None
        share = config.head_share if config.truncation == "head_tail" else None
        self.head = head_tokens(self.max_length, self.n_prefix, self.n_suffix, share)

    def __call__(self, batch: dict[str, list[Any]]) -> pa.Table:
        # The Rust tokenizer's fast batch path (no character offsets; same ids as tokenizer()).
        encodings = self.backend.encode_batch_fast(batch["text"], add_special_tokens=True)
        ids_out, lengths = [], []
        for encoding in encodings:
            lengths.append(len(encoding.ids))
            ids_out.append(cut(encoding.ids, self.max_length, self.n_prefix, self.n_suffix, self.head))
        n_tokens = np.asarray(lengths, dtype=np.int32)
        limit = self.max_length
        columns = {
            "input_ids": pa.array(ids_out, type=pa.list_(pa.int32())),
            "n_tokens": pa.array(n_tokens),
            "truncated": pa.array(n_tokens > limit),
        }
        # Returning Arrow skips the per-value type inference of a dict of Python lists.
        return pa.table({**columns, **{k: pa.array(v) for k, v in batch.items() if k != "text"}})


def encode_texts(tokenizer: Any, config: TokenizeConfig, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts``, cut as in training."""
    return Encoder(tokenizer, config)({"text": texts}).column("input_ids").to_pylist()
