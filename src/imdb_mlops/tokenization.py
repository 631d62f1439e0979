"""Tokenize stage: ingested parquet splits -> Arrow datasets of token ids.

Entry point: :func:`tokenize`. Uses the fast tokenizer of ``model.name`` (hub id or folder) in a
batched ``datasets.map`` with ``tokenize.num_proc`` processes. Reviews longer than
``tokenize.max_length`` are cut either at the end (``head``) or in the middle (``head_tail``:
the first ``head_share`` of the budget and the last tokens, so the closing verdict survives). No padding:
batches are padded dynamically at training time, where the attention mask is built too.

Writes ``save_to_disk`` datasets with ``input_ids``, ``label`` (and ``rating`` when known),
``n_tokens`` (length before truncation) and ``truncated``; ``tokenizer.json`` beside them
records which tokenizer made the ids, so training can refuse ids from another vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from rich.console import Console
from rich.table import Table

from imdb_mlops.config import Params, TokenizeConfig
from imdb_mlops.errors import PipelineError
from imdb_mlops.hub import short_name
from imdb_mlops.estimate import cpu_training_message
from imdb_mlops.ingest import SPLITS
from imdb_mlops.outputs import atomic_outputs, write_json
from imdb_mlops.pretrained import load_config, load_tokenizer, unpadded_backend
from imdb_mlops.truncation import cut, head_tokens, special_token_layout

METADATA_FILE = "tokenization.json"
console = Console(stderr=True)


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


def tokenize(params: Params, raw_dir: Path, out_dir: Path, report_path: Path) -> dict[str, Any]:
    """Run the stage: tokenize ``raw_dir/{split}.parquet`` into ``out_dir`` and write the report."""
    cfg = params.tokenize
    tokenizer = load_tokenizer(params.model.name, params.hub)
    model_limit = getattr(tokenizer, "model_max_length", None) or 10**9
    if cfg.max_length > model_limit:
        raise PipelineError(
            f"tokenize.max_length: {cfg.max_length} exceeds the model's limit of {model_limit} tokens"
        )
    splits = read_raw_splits(raw_dir)
    encoded = tokenize_splits(splits, tokenizer, cfg)
    report = _report(encoded, cfg, params.model.name)
    with atomic_outputs(out_dir, report_path) as (tmp_dir, tmp_report):
        encoded.save_to_disk(str(tmp_dir))
        write_json(tmp_dir / METADATA_FILE, tokenizer_fingerprint(tokenizer, params.model.name, cfg))
        write_json(tmp_report, report)
    _print_summary(report)
    _print_training_estimate(params, report)
    return report


def read_raw_splits(raw_dir: Path) -> DatasetDict:
    splits = {}
    for split in SPLITS:
        path = raw_dir / f"{split}.parquet"
        if not path.exists():
            raise PipelineError(f"{path}: missing; run the ingest stage first (dvc repro ingest)")
        table = pq.read_table(path)
        if "text" not in table.column_names or "label" not in table.column_names:
            raise PipelineError(f"{path}: expected columns text and label, found {', '.join(table.column_names)}")
        splits[split] = Dataset(table)
    return DatasetDict(splits)


def tokenize_splits(splits: DatasetDict, tokenizer: Any, cfg: TokenizeConfig) -> DatasetDict:
    """The stage's work without I/O: batched, multi-process ``map`` over every split."""
    if cfg.num_proc > 1:
        # Rust-side threads and forked workers don't mix; each worker runs single-threaded.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    encoder = Encoder(tokenizer, cfg)
    fingerprints = _fingerprint(splits, tokenizer, cfg)
    return DatasetDict(
        {
            name: ds.map(
                encoder,
                batched=True,
                batch_size=cfg.batch_size,
                num_proc=cfg.num_proc if cfg.num_proc > 1 else None,
                remove_columns=["text"],
                desc=f"Tokenizing {name}",
                # our own fingerprint: cheaper than datasets hashing the whole tokenizer with dill
                new_fingerprint=fingerprints[name],
            )
            for name, ds in splits.items()
        }
    )


def _fingerprint(splits: DatasetDict, tokenizer: Any, cfg: TokenizeConfig) -> dict[str, str]:
    settings = json.dumps(
        {"tokenizer": tokenizer_fingerprint(tokenizer, "", cfg), "batch_size": cfg.batch_size}, sort_keys=True
    )
    return {
        name: hashlib.sha256(f"{ds._fingerprint}:{settings}".encode()).hexdigest()[:32] for name, ds in splits.items()
    }


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


def _report(encoded: DatasetDict, cfg: TokenizeConfig, model_name: str) -> dict[str, Any]:
    report: dict[str, Any] = {"model_name": model_name, "max_length": cfg.max_length, "truncation": cfg.truncation}
    for split, ds in encoded.items():
        lengths = np.asarray(ds["n_tokens"])
        kept = np.minimum(lengths, cfg.max_length)
        q = np.percentile(lengths, [50, 90, 95, 99]) if len(lengths) else np.zeros(4)
        report[split] = {
            "rows": len(ds),
            "tokens_p50": float(q[0]),
            "tokens_p90": float(q[1]),
            "tokens_p95": float(q[2]),
            "tokens_p99": float(q[3]),
            "tokens_max": int(lengths.max()) if len(lengths) else 0,
            "mean_tokens_kept": round(float(kept.mean()), 1) if len(kept) else 0.0,
            "truncated_share": round(float(np.mean(ds["truncated"])), 4) if len(ds) else 0.0,
        }
    return report


def _print_summary(report: dict[str, Any]) -> None:
    table = Table(title=f"Token lengths ({short_name(report['model_name'])}, max_length {report['max_length']})")
    for column in ("split", "rows", "p50", "p95", "max", "truncated"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split in SPLITS:
        info = report[split]
        table.add_row(
            split,
            f"{info['rows']:,}",
            f"{info['tokens_p50']:.0f}",
            f"{info['tokens_p95']:.0f}",
            f"{info['tokens_max']:,}",
            f"{info['truncated_share']:.1%}",
        )
    console.print(table)


def _print_training_estimate(params: Params, report: dict[str, Any]) -> None:
    """Tell CPU users, before the train stage starts, roughly how long it will take."""
    import torch

    if torch.cuda.is_available():
        console.print(f"GPU found ({torch.cuda.get_device_name(0)}): training will run on it.")
        return
    model_config = load_config(params.model.name, params.hub)
    train = report["train"]
    console.print(cpu_training_message(params, train["rows"], train["mean_tokens_kept"], model_config))
