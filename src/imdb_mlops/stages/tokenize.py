"""Tokenize stage: ingested parquet splits -> Arrow datasets of token ids.

Entry point: :func:`tokenize`. Steps: **read** the fast tokenizer of ``model.name`` (hub id or folder)
and the ingested splits; **compute** the ids in a batched ``datasets.map`` with ``tokenize.num_proc``
processes (:class:`~imdb_mlops.modeling.encoding.Encoder`: cut to ``tokenize.max_length``, head or
head + tail, no padding: batches are padded dynamically at training time); **write** ``save_to_disk``
datasets with ``input_ids``, ``label`` (and ``rating`` when known), ``n_tokens`` (length before
truncation) and ``truncated``, ``tokenization.json`` beside them (which tokenizer made the ids, so
training can refuse ids from another vocabulary) and the report; **print** the token lengths and,
on a CPU, roughly how long training will take.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.files import atomic_outputs, refuse_foreign_targets, write_json
from imdb_mlops.common.hub import short_name
from imdb_mlops.config import Params, TokenizeConfig
from imdb_mlops.data.splits import SPLITS, split_path
from imdb_mlops.modeling.encoding import Encoder
from imdb_mlops.modeling.estimate import cpu_training_message
from imdb_mlops.modeling.pretrained import METADATA_FILE, load_config, load_tokenizer, tokenizer_fingerprint

console = Console(stderr=True)


def tokenize(params: Params, raw_dir: Path, out_dir: Path, report_path: Path) -> dict[str, Any]:
    """Run the stage: tokenize ``raw_dir/{split}.parquet`` into ``out_dir`` and write the report."""
    refuse_foreign_targets(out_dir, report_path, owner="tokenize")
    cfg = params.tokenize
    tokenizer = load_tokenizer(params.model.name, params.hub)
    model_limit = getattr(tokenizer, "model_max_length", None) or 10**9
    if cfg.max_length > model_limit:
        raise PipelineError(f"tokenize.max_length: {cfg.max_length} exceeds the model's limit of {model_limit} tokens")
    if tokenizer.pad_token_id is None:  # the train stage pads every batch: refuse now, not after minutes
        raise PipelineError(
            f"model.name: the tokenizer of '{params.model.name}' has no padding token (a decoder's tokenizer?); "
            "the classifier needs one: use an encoder checkpoint such as distilbert-base-uncased"
        )
    splits = read_raw_splits(raw_dir)
    encoded = tokenize_splits(splits, tokenizer, cfg)
    report = _report(encoded, cfg, params.model.name)
    with atomic_outputs(out_dir, report_path, owner="tokenize") as (tmp_dir, tmp_report):
        encoded.save_to_disk(str(tmp_dir))
        write_json(tmp_dir / METADATA_FILE, tokenizer_fingerprint(tokenizer, params.model.name, cfg))
        write_json(tmp_report, report)
    _print_summary(report)
    _print_training_estimate(params, report)
    return report


def read_raw_splits(raw_dir: Path) -> DatasetDict:
    splits = {}
    for split in SPLITS:
        path = split_path(raw_dir, split)
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise PipelineError(
                f"{path}: not a readable parquet file ({first_line(exc)}); re-run dvc repro ingest"
            ) from None
        if "text" not in table.column_names or "label" not in table.column_names:
            raise PipelineError(f"{path}: expected columns text and label, found {', '.join(table.column_names)}")
        splits[split] = Dataset(table)
    return DatasetDict(splits)


def tokenize_splits(splits: DatasetDict, tokenizer: Any, cfg: TokenizeConfig) -> DatasetDict:
    """The stage's work without I/O: batched, multi-process ``map`` over every split."""
    # at most one worker per batch: a pool for less than a batch each starts processes for nothing
    processes = {name: min(cfg.num_proc, -(-len(ds) // cfg.batch_size)) for name, ds in splits.items()}
    if max(processes.values(), default=1) > 1:
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
                num_proc=processes[name] if processes[name] > 1 else None,
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
    console.print(
        cpu_training_message(params.train, params.model.name, train["rows"], train["mean_tokens_kept"], model_config)
    )
