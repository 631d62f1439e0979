"""Train stage: fine-tune ``model.name`` as a negative/positive classifier with the HF Trainer.

Entry point: :func:`train`. Steps:

1. **read**: the model's tokenizer (checked against the vocabulary that made the tokenized data),
   the tokenized splits, the pretrained checkpoint with a fresh two-label head;
2. **compute**: the Trainer (:mod:`imdb_mlops.modeling.finetuning`: dynamic padding with
   length-grouped batches, warmup and a decaying schedule, weight decay, gradient accumulation,
   bf16/fp16 chosen automatically on a GPU, bf16 autocast on a CPU with native bf16 (AMX or
   AVX-512 BF16; :mod:`imdb_mlops.modeling.capabilities`), validation every epoch or N steps with early stopping
   and best-checkpoint selection), resuming from the last checkpoint of the same run key and
   continuing the same MLflow run;
3. **write**, together: the model as safetensors with its tokenizer, the MLflow run file, training
   metrics, the training history and its plots;
4. **log** params, lineage and curves into the MLflow run; **print** the validation table.

Under ``torchrun`` / ``accelerate launch`` every process trains; rank 0 alone tracks and writes.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, read_json, refuse_foreign_targets, write_json
from imdb_mlops.config import Params
from imdb_mlops.modeling.capabilities import capability_tags, choose_precision
from imdb_mlops.modeling.classifier import freeze_bottom, load_pretrained_classifier
from imdb_mlops.modeling.estimate import cpu_training_message
from imdb_mlops.modeling.finetuning import (
    CHECKPOINT_ROOT,
    MlflowMetricsCallback,
    barrier,
    best_evaluation,
    classifier_arguments,
    device_name,
    distributed_rank,
    last_checkpoint,
    out_of_memory_error,
    run_key,
    split_history,
    step_of,
)
from imdb_mlops.modeling.metrics import validation_metrics
from imdb_mlops.modeling.pretrained import (
    METADATA_FILE,
    checkpoint_provenance,
    resolve_pretrained,
    tokenizer_fingerprint,
    tokenizer_from,
)
from imdb_mlops.registry.tracking import (
    dvc_lock_hashes,
    experiment_tags,
    git_commit,
    log_dataset,
    setup_mlflow,
    tracking_uri,
    write_run_file,
)
from imdb_mlops.reporting import figures

console = Console(stderr=True)


@dataclass
class TrainOutputs:
    """Where the stage writes: the model folder and, under the reports folder, the run file,
    metrics, history, plot data and the training-curves figure (in that order in :meth:`paths`)."""

    model_dir: Path
    reports_dir: Path

    @property
    def history(self) -> Path:
        return self.reports_dir / "train_history.json"

    @property
    def curves_png(self) -> Path:
        return self.reports_dir / "figures" / "training_curves.png"

    def paths(self) -> tuple[Path, ...]:
        r = self.reports_dir
        return (
            self.model_dir,
            r / "train_run.json",
            r / "train_metrics.json",
            self.history,
            r / "plots" / "train_loss.json",
            r / "plots" / "validation.json",
            self.curves_png,
        )


def train(
    params: Params,
    tokenized_dir: Path,
    raw_dir: Path,
    model_dir: Path,
    reports_dir: Path,
    checkpoint_root: Path = CHECKPOINT_ROOT,
) -> dict[str, Any]:
    """Run the stage. Writes ``model_dir`` and, in ``reports_dir``: ``train_run.json``,
    ``train_metrics.json``, ``train_history.json``, ``plots/train_loss.json``,
    ``plots/validation.json`` and ``figures/training_curves.png``."""
    import mlflow
    import torch
    import transformers
    from datasets import load_from_disk

    cfg = params.train
    outputs = TrainOutputs(model_dir, reports_dir)
    refuse_foreign_targets(*outputs.paths(), owner="train")
    # --- read
    tokenizer, model_source = load_tokenizer_checked(params, tokenized_dir)
    tokenized = load_from_disk(str(tokenized_dir))
    transformers.set_seed(params.seed)  # before the classification head is initialised
    model = load_pretrained_classifier(model_source, params.model.name, len(tokenizer), cfg.attention_dropout)
    freeze_bottom(model, cfg.frozen_layers)

    device = device_name()
    precision = choose_precision(cfg.precision, device)
    rank, world_size = distributed_rank()
    main = rank == 0  # under torchrun / accelerate launch only rank 0 tracks and writes outputs
    if device == "cpu" and main:
        print_cpu_estimate(params, tokenized["train"], model.config)

    # --- compute
    experiment_id = setup_mlflow(params.tracking) if main else ""
    checkpoint_dir = checkpoint_root / classifier_run_key(params, tokenized_dir)
    args = classifier_arguments(cfg, params.seed, checkpoint_dir, precision, distributed=world_size > 1)
    _ = args.device  # sets up the process group when launched with several processes
    if main and (checkpoint_dir / "completed.json").exists():
        shutil.rmtree(checkpoint_dir)  # a finished run is not resumed: `dvc repro -f train` retrains
    barrier(world_size)
    resume_from = last_checkpoint(checkpoint_dir, remove_incomplete=main)
    pruning = sweep_pruning(world_size)
    previous_run = read_json(checkpoint_dir / "mlflow_run.json").get("run_id") if resume_from else None
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"].select_columns(["input_ids", "label"]),
        eval_dataset=evaluation_reviews(tokenized["validation"], cfg.eval_samples),
        processing_class=tokenizer,
        data_collator=transformers.DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if device == "cuda" else None
        ),
        compute_metrics=validation_metrics(),
        callbacks=[MlflowMetricsCallback()]
        + ([transformers.EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience else [])
        + ([pruning] if pruning else []),
    )

    tracked = (
        mlflow.start_run(
            run_id=previous_run, experiment_id=experiment_id, log_system_metrics=params.tracking.system_metrics
        )
        if main
        else contextlib.nullcontext()
    )
    with tracked as run:
        if main:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            write_json(checkpoint_dir / "mlflow_run.json", {"run_id": run.info.run_id})
            if previous_run is None:
                log_run_inputs(params, raw_dir, tokenized_dir, device, precision, world_size)
                if pruning:
                    mlflow.set_tags(pruning.link.mlflow_tags())
            else:
                console.print(f"[bold]Resuming[/] from {resume_from} (MLflow run {run.info.run_id})")
                mlflow.set_tag("resumed_from", str(resume_from))
        try:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            raise out_of_memory_error(exc, cfg.per_device_train_batch_size, device) from None
        summary = training_summary(trainer, result, device, precision, world_size, resumed=previous_run is not None)
        if pruning:
            summary["sweep"] = pruning.summary()
            if main:
                mlflow.set_tag("sweep.pruned", str(summary["sweep"]["pruned"]).lower())
        if not main:
            return summary  # rank 0 writes the outputs and closes the run
        train_log, validation_log = split_history(trainer.state.log_history)

        # --- write
        with atomic_outputs(*outputs.paths(), owner="train") as staged:
            tmp_model, tmp_run, tmp_metrics, tmp_history, tmp_loss, tmp_val, tmp_png = staged
            trainer.model.save_pretrained(tmp_model, safe_serialization=True)
            tokenizer.save_pretrained(tmp_model)
            write_run_file(tmp_run, run.info.run_id, experiment_id, tracking_uri())
            write_json(tmp_metrics, summary)
            write_json(tmp_history, {"train": train_log, "validation": validation_log})
            write_json(tmp_loss, train_log)
            write_json(tmp_val, validation_log)
            figures.training_curves(train_log, validation_log, tmp_png)

        # --- log
        mlflow.log_metrics({f"final_val_{k}": v for k, v in summary["validation"].items()})
        mlflow.log_artifact(str(outputs.curves_png), "figures")
        mlflow.log_artifact(str(outputs.history))

    if cfg.delete_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    else:
        write_json(checkpoint_dir / "completed.json", {"run_id": run.info.run_id})
    # --- print
    print_summary(summary)
    return summary


def sweep_pruning(world_size: int) -> Any:
    """A :class:`~imdb_mlops.sweeps.pruning.PruningCallback` when a sweep runs this stage as one
    of its trials (one process: under a launcher every rank would have to stop together)."""
    from imdb_mlops.sweeps.pruning import PruningCallback
    from imdb_mlops.sweeps.trial_link import open_trial, trial_from_env

    link = trial_from_env()
    if link is None:
        return None
    if world_size > 1:
        raise PipelineError("a sweep trial trains in one process; unset $IMDB_MLOPS_TRAIN_LAUNCHER")
    return PruningCallback(open_trial(link), link)


def evaluation_reviews(validation: Any, samples: int | None) -> Any:
    """The validation reviews scored at each evaluation: the first ``samples`` of them, or all."""
    if samples is not None and samples < len(validation):
        validation = validation.select(range(samples))
    return validation.select_columns(["input_ids", "label"])


def classifier_run_key(params: Params, tokenized_dir: Path) -> str:
    """Same params and same tokenized data -> same key -> a restarted run resumes."""
    fingerprints = {p.parent.name: read_json(p).get("_fingerprint") for p in sorted(tokenized_dir.glob("*/state.json"))}
    return run_key(
        {"seed": params.seed, "model": params.model.name, "train": params.train.model_dump(), "data": fingerprints}
    )


def training_summary(
    trainer: Any, result: Any, device: str, precision: str, world_size: int, resumed: bool
) -> dict[str, Any]:
    """What ``reports/train_metrics.json`` holds: speed, steps, the best checkpoint's validation."""
    final = best_evaluation(trainer)
    return {
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 3),
        "global_step": trainer.state.global_step,
        "epochs_completed": round(trainer.state.epoch or 0.0, 3),
        "best_checkpoint_step": step_of(trainer.state.best_model_checkpoint),
        # fewer than the model's weights where train.frozen_layers keeps the bottom of the encoder
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "validation": {
            k.removeprefix("eval_"): v
            for k, v in final.items()
            if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))
        },
        "device": device,
        "precision": precision,
        "capabilities": capability_tags(),  # why this precision: the CPU flags / GPU of this machine
        "world_size": world_size,
        "resumed": resumed,
    }


def log_run_inputs(
    params: Params, raw_dir: Path, tokenized_dir: Path, device: str, precision: str, world_size: int = 1
) -> None:
    """Everything that reproduces the run: params, code version, data hashes, dataset inputs."""
    import mlflow

    flat = {k: ("null" if v is None else v) for k, v in params.flat().items()}
    mlflow.log_params(flat)
    mlflow.set_tags(
        {
            **git_commit(),
            **experiment_tags(),
            **dvc_lock_hashes(),
            "model.name": params.model.name,
            **{f"model.{k}": v for k, v in checkpoint_provenance(params.model.name).items()},
            "device": device,
            "precision": precision,
            **capability_tags(),
            "world_size": str(world_size),
            "stage": "train",
        }
    )
    mlflow.log_dict(read_json(tokenized_dir / METADATA_FILE), "tokenization.json")
    mlflow.log_dict(params.model_dump(mode="json"), "params.yaml")  # the exact params, validated
    if Path("dvc.lock").is_file():  # the data and code hashes of the stages that ran before this one
        mlflow.log_artifact("dvc.lock")
    for split, context in (("train", "training"), ("validation", "validation")):
        log_dataset(params.data.source, raw_dir / f"{split}.parquet", split, context)


def print_cpu_estimate(params: Params, train_split: Any, config: Any) -> None:
    kept = np.minimum(np.asarray(train_split["n_tokens"]), params.tokenize.max_length)
    console.print(cpu_training_message(params.train, params.model.name, len(train_split), float(kept.mean()), config))


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"Validation after training ({summary['global_step']} steps, {summary['device']}, {summary['precision']})"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary["validation"].items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("samples/s", f"{summary['train_samples_per_second']:.2f}")
    console.print(table)


def load_tokenizer_checked(params: Params, tokenized_dir: Path) -> tuple[Any, str]:
    """The model's tokenizer, after checking the tokenized data was made with the same vocabulary."""
    meta_path = tokenized_dir / METADATA_FILE
    if not meta_path.exists():
        raise PipelineError(f"{meta_path}: missing; run the tokenize stage first (dvc repro tokenize)")
    made_with = read_json(meta_path)
    source = resolve_pretrained(params.model.name, params.hub)
    tokenizer = tokenizer_from(source, params.model.name)
    current = tokenizer_fingerprint(tokenizer, params.model.name, params.tokenize)
    if made_with.get("vocab_digest") != current["vocab_digest"]:
        raise PipelineError(
            f"{tokenized_dir}: token ids were made by the tokenizer of '{made_with.get('model_name')}' "
            f"(vocabulary {made_with.get('vocab_digest')}), not by model.name '{params.model.name}' "
            f"(vocabulary {current['vocab_digest']}); re-run the tokenize stage (dvc repro tokenize)"
        )
    return tokenizer, source
