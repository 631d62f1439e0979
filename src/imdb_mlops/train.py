"""Train stage: fine-tune ``model.name`` as a negative/positive classifier with the HF Trainer.

Entry point: :func:`train`. Dynamic padding with length-grouped batches, warmup and a decaying
schedule, weight decay, gradient accumulation, bf16/fp16 chosen automatically on a GPU,
validation every epoch (or every N steps) with early stopping and best-checkpoint selection.

Checkpoints go to ``models/checkpoints/<run key>`` (outside DVC's outputs, which DVC deletes
before a stage runs); a run that is killed and started again with the same params and data
resumes from its last checkpoint and continues the same MLflow run. Outputs, written together
at the end: the model as safetensors with its tokenizer, the MLflow run file, training metrics,
the training history and its plots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback

from imdb_mlops import figures
from imdb_mlops.config import Params
from imdb_mlops.errors import PipelineError
from imdb_mlops.estimate import cpu_training_message
from imdb_mlops.outputs import atomic_outputs, write_json
from imdb_mlops.pretrained import resolve_pretrained, tokenizer_from
from imdb_mlops.tokenization import METADATA_FILE, tokenizer_fingerprint
from imdb_mlops.evaluation import METRICS_MODULE
from imdb_mlops.tracking import dvc_lock_hashes, git_commit, log_dataset, setup_mlflow, tracking_uri, write_run_file

LABELS = {0: "negative", 1: "positive"}
CHECKPOINT_ROOT = Path("models/checkpoints")
console = Console(stderr=True)


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
    tokenizer, model_source = _load_tokenizer_checked(params, tokenized_dir)
    tokenized = load_from_disk(str(tokenized_dir))
    transformers.set_seed(params.seed)  # before the classification head is initialised
    model = load_classifier(model_source, params.model.name, len(tokenizer), cfg.attention_dropout)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = choose_precision(cfg.precision, device)
    rank, world_size = distributed_rank()
    main = rank == 0  # under torchrun / accelerate launch only rank 0 tracks and writes outputs
    if device == "cpu" and main:
        _print_cpu_estimate(params, tokenized["train"], model.config)

    experiment_id = setup_mlflow(params) if main else ""
    key = run_key(params, tokenized_dir)
    checkpoint_dir = checkpoint_root / key
    args = training_arguments(params, checkpoint_dir, precision, distributed=world_size > 1)
    _ = args.device  # sets up the process group when launched with several processes
    if main and (checkpoint_dir / "completed.json").exists():
        shutil.rmtree(checkpoint_dir)  # a finished run is not resumed: `dvc repro -f train` retrains
    _barrier(world_size)
    last_checkpoint = _last_checkpoint(checkpoint_dir, remove_incomplete=main)
    previous_run = _read_json(checkpoint_dir / "mlflow_run.json").get("run_id") if last_checkpoint else None
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"].select_columns(["input_ids", "label"]),
        eval_dataset=tokenized["validation"].select_columns(["input_ids", "label"]),
        processing_class=tokenizer,
        data_collator=transformers.DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if device == "cuda" else None),
        compute_metrics=validation_metrics(),
        callbacks=[MlflowMetricsCallback()]
        + ([transformers.EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience else []),
    )

    tracked = (
        mlflow.start_run(run_id=previous_run, experiment_id=experiment_id, log_system_metrics=params.tracking.system_metrics)
        if main
        else contextlib.nullcontext()
    )
    with tracked as run:
        if main:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            write_json(checkpoint_dir / "mlflow_run.json", {"run_id": run.info.run_id})
            if previous_run is None:
                _log_run_inputs(params, raw_dir, tokenized_dir, device, precision, world_size)
            else:
                console.print(f"[bold]Resuming[/] from {last_checkpoint} (MLflow run {run.info.run_id})")
                mlflow.set_tag("resumed_from", str(last_checkpoint))
        try:
            result = trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            raise out_of_memory_error(exc, cfg.per_device_train_batch_size, device) from None
        final = best_evaluation(trainer)
        summary = {
            "train_runtime_s": round(result.metrics["train_runtime"], 1),
            "train_samples_per_second": round(result.metrics["train_samples_per_second"], 3),
            "global_step": trainer.state.global_step,
            "epochs_completed": round(trainer.state.epoch or 0.0, 3),
            "best_checkpoint_step": _step_of(trainer.state.best_model_checkpoint),
            "validation": {
                k.removeprefix("eval_"): v
                for k, v in final.items()
                if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))
            },
            "device": device,
            "precision": precision,
            "world_size": world_size,
            "resumed": previous_run is not None,
        }
        if not main:
            return summary  # rank 0 writes the outputs and closes the run
        mlflow.log_metrics({f"final_val_{k}": v for k, v in summary["validation"].items()})
        train_log, validation_log = split_history(trainer.state.log_history)

        run_path = reports_dir / "train_run.json"
        metrics_path = reports_dir / "train_metrics.json"
        history_path = reports_dir / "train_history.json"
        loss_plot, val_plot = reports_dir / "plots" / "train_loss.json", reports_dir / "plots" / "validation.json"
        curves_png = reports_dir / "figures" / "training_curves.png"
        with atomic_outputs(model_dir, run_path, metrics_path, history_path, loss_plot, val_plot, curves_png) as tmp:
            tmp_model, tmp_run, tmp_metrics, tmp_history, tmp_loss, tmp_val, tmp_png = tmp
            trainer.model.save_pretrained(tmp_model, safe_serialization=True)
            tokenizer.save_pretrained(tmp_model)
            write_run_file(tmp_run, run.info.run_id, experiment_id, tracking_uri())
            write_json(tmp_metrics, summary)
            write_json(tmp_history, {"train": train_log, "validation": validation_log})
            write_json(tmp_loss, train_log)
            write_json(tmp_val, validation_log)
            figures.training_curves(train_log, validation_log, tmp_png)
        mlflow.log_artifact(str(curves_png), "figures")
        mlflow.log_artifact(str(history_path))

    if cfg.delete_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    else:
        write_json(checkpoint_dir / "completed.json", {"run_id": run.info.run_id})
    _print_summary(summary)
    return summary


# --- loading and checks ------------------------------------------------------------------


def _load_tokenizer_checked(params: Params, tokenized_dir: Path) -> tuple[Any, str]:
    """The model's tokenizer, after checking the tokenized data was made with the same vocabulary."""
    meta_path = tokenized_dir / METADATA_FILE
    if not meta_path.exists():
        raise PipelineError(f"{meta_path}: missing; run the tokenize stage first (dvc repro tokenize)")
    made_with = json.loads(meta_path.read_text())
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


def load_classifier(source: str, name: str, vocab_size: int, attention_dropout: float | None = None) -> Any:
    """A 2-label classifier with labels named negative/positive; clear errors for bad folders."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if Path(source).is_dir() and not (Path(source) / "config.json").exists():
        raise PipelineError(f"model.name: '{name}' has no config.json; not a transformers checkpoint folder")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"model.name: '{name}' has an unusable config.json: {str(exc).splitlines()[0][:200]}") from None
    architectures = config.architectures or []
    if any(a.endswith("ForSequenceClassification") for a in architectures) and config.num_labels != 2:
        raise PipelineError(
            f"model.name: '{name}' is a classifier with {config.num_labels} labels "
            f"({', '.join(map(str, config.id2label.values()))}); this pipeline trains 2 (negative, positive). "
            "Start from its base checkpoint instead"
        )
    if attention_dropout is not None:
        for attribute in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
            if hasattr(config, attribute):
                setattr(config, attribute, attention_dropout)
    config.num_labels = 2
    config.id2label = dict(LABELS)
    config.label2id = {v: k for k, v in LABELS.items()}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config, trust_remote_code=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PipelineError(
            f"model.name: '{name}' cannot be loaded as a sequence classifier: {str(exc).splitlines()[0][:200]}"
        ) from None
    embeddings = model.get_input_embeddings().num_embeddings
    if vocab_size > embeddings:
        raise PipelineError(
            f"model.name: tokenizer has {vocab_size} tokens but the model's embedding table has {embeddings}; "
            "the tokenizer does not belong to this checkpoint"
        )
    return model


def choose_precision(requested: str, device: str) -> str:
    import torch

    if requested == "auto":
        if device != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested in ("bf16", "fp16") and device != "cuda":
        raise PipelineError(f"train.precision: {requested} needs a GPU; this machine has none (use auto or fp32)")
    return requested


def out_of_memory_error(exc: BaseException, batch_size: int, device: str) -> BaseException:
    """A one-line PipelineError for out-of-memory failures; other errors pass through unchanged."""
    text = str(exc).lower()
    if "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text:
        return PipelineError(
            f"train.per_device_train_batch_size: {batch_size} does not fit in {device} memory; lower it "
            "(and raise train.gradient_accumulation_steps to keep the effective batch size)"
        )
    return exc


# --- trainer configuration ---------------------------------------------------------------


def training_arguments(params: Params, output_dir: Path, precision: str, distributed: bool = False) -> Any:
    from transformers import TrainingArguments

    cfg = params.train
    steps = cfg.eval_strategy == "steps"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of all steps (transformers 5)
        lr_scheduler_type=cfg.lr_scheduler_type,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=cfg.eval_strategy,
        save_strategy=cfg.eval_strategy,
        eval_steps=cfg.eval_steps if steps else None,
        save_steps=cfg.eval_steps if steps else 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=cfg.metric_for_best_model,
        greater_is_better=cfg.metric_for_best_model != "loss",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not _cuda(),
        seed=params.seed,
        data_seed=params.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        report_to=[],  # MlflowMetricsCallback logs into the stage's own run
        # several processes (torchrun / accelerate launch): NCCL between GPUs, gloo between CPU processes
        ddp_backend=("nccl" if _cuda() else "gloo") if distributed else None,
        # The classifier's loss is a per-batch mean; averaging token counts across devices would
        # scale it (and its gradients) by the number of processes (measured: 2x with 2 processes).
        average_tokens_across_devices=False,
        disable_tqdm=False,
    )


class MlflowMetricsCallback(TrainerCallback):
    """Per-step training and per-evaluation validation metrics into the active MLflow run.

    Lighter than transformers' own MLflow integration: it logs no TrainingArguments or model
    config (the run already holds params.yaml), only numbers, asynchronously, from rank 0."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        import mlflow

        if not state.is_world_process_zero or not logs or mlflow.active_run() is None:
            return
        numbers = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            mlflow.log_metrics(numbers, step=state.global_step, synchronous=False)


def best_evaluation(trainer: Any) -> dict[str, float]:
    """Validation metrics of the checkpoint training ended on (the best one): read from the
    log history when that evaluation was logged, evaluated again otherwise."""
    best_step = _step_of(trainer.state.best_model_checkpoint) or trainer.state.global_step
    for record in reversed(trainer.state.log_history):
        if record.get("step") == best_step and "eval_loss" in record:
            return record
    return trainer.evaluate()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def validation_metrics() -> Any:
    """compute_metrics for the Trainer, through the packaged `evaluate` module (no hub)."""
    import evaluate

    metric = evaluate.load(str(METRICS_MODULE))

    def compute(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        probs = _softmax(np.asarray(logits, dtype=np.float64))[:, 1]
        result = metric.compute(predictions=(probs >= 0.5).astype(int), references=labels, prediction_scores=probs)
        return {k: result[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")}

    return compute


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def run_key(params: Params, tokenized_dir: Path) -> str:
    """Same params and same tokenized data -> same key -> a restarted run resumes."""
    states = sorted(tokenized_dir.glob("*/state.json"))
    fingerprints = {p.parent.name: json.loads(p.read_text()).get("_fingerprint") for p in states}
    payload = json.dumps(
        {"seed": params.seed, "model": params.model.name, "train": params.train.model_dump(), "data": fingerprints},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


CHECKPOINT_FILES = ("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun / accelerate launch; (0, 1) alone."""
    import os

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _barrier(world_size: int) -> None:
    """Wait for every process of a multi-process run (no-op alone)."""
    import torch.distributed as dist

    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


def _last_checkpoint(folder: Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint; one cut short by a kill is removed (by rank 0) and skipped."""
    if not folder.is_dir():
        return None
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: _step_of(p.name) or -1, reverse=True)
    for checkpoint in checkpoints:
        if all((checkpoint / name).exists() for name in CHECKPOINT_FILES):
            return checkpoint
        if remove_incomplete:
            console.print(f"[yellow]Removing incomplete checkpoint[/] {checkpoint}")
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _step_of(checkpoint: str | None) -> int | None:
    tail = checkpoint.rsplit("-", 1)[-1] if checkpoint else ""
    return int(tail) if tail.isdigit() else None


# --- tracking ----------------------------------------------------------------------------


def _log_run_inputs(params: Params, raw_dir: Path, tokenized_dir: Path, device: str, precision: str, world_size: int = 1) -> None:
    """Everything that reproduces the run: params, code version, data hashes, dataset inputs."""
    import mlflow

    flat = {k: ("null" if v is None else v) for k, v in params.flat().items()}
    mlflow.log_params(flat)
    mlflow.set_tags(
        {
            **git_commit(),
            **dvc_lock_hashes(),
            "model.name": params.model.name,
            "device": device,
            "precision": precision,
            "world_size": str(world_size),
            "stage": "train",
        }
    )
    mlflow.log_dict(json.loads((tokenized_dir / METADATA_FILE).read_text()), "tokenization.json")
    for split, context in (("train", "training"), ("validation", "validation")):
        log_dataset(params, raw_dir / f"{split}.parquet", split, context)


def split_history(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trainer log records -> (per-step training records, per-evaluation validation records)."""
    train_log, validation_log = [], []
    for record in log_history:
        if "loss" in record:
            train_log.append({k: record[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in record})
        elif "eval_loss" in record:
            validation_log.append({k: v for k, v in record.items() if k == "step" or k == "epoch" or k.startswith("eval_")})
    # the final evaluation of the best model repeats a step; keep per-evaluation records unique
    seen: dict[int, dict[str, Any]] = {r["step"]: r for r in validation_log}
    return train_log, list(seen.values())


def _print_cpu_estimate(params: Params, train_split: Any, config: Any) -> None:
    kept = np.minimum(np.asarray(train_split["n_tokens"]), params.tokenize.max_length)
    console.print(cpu_training_message(params, len(train_split), float(kept.mean()), config))


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"Validation after training ({summary['global_step']} steps, {summary['device']}, {summary['precision']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary["validation"].items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("samples/s", f"{summary['train_samples_per_second']:.2f}")
    console.print(table)
