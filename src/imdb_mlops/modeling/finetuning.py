"""Fine-tuning with the Hugging Face Trainer, shared by the classifier and the generator:
arguments, precision, MLflow metrics, resumable checkpoints, multi-process runs, history.

Checkpoints go to ``models/checkpoints/<run key>`` (outside DVC's outputs, which DVC deletes
before a stage runs); a run killed and started again with the same key resumes from its last
complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from transformers import TrainerCallback

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import GeneratorFinetuneConfig, TrainConfig

CHECKPOINT_ROOT = Path("models/checkpoints")
console = Console(stderr=True)


def trainer_arguments(
    output_dir: Path, seed: int, cfg: TrainConfig | GeneratorFinetuneConfig, precision: str, **extra: Any
) -> Any:
    """``TrainingArguments`` with what every fine-tuning in the pipeline shares: the schedule and batch
    of ``cfg`` (the classifier's ``train`` or the generator's ``generation.finetune`` section), seeds,
    precision, CPU when there is no GPU, no reporting integrations (the stage logs into its own MLflow
    run through :class:`MlflowMetricsCallback`) and progress bars; ``extra`` adds the rest."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of all steps (transformers 5)
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda_available(),
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=False,
        **extra,
    )


def classifier_arguments(
    cfg: TrainConfig, seed: int, output_dir: Path, precision: str, distributed: bool = False
) -> Any:
    """The classifier's arguments: epochs, validation and a checkpoint per evaluation, best-model
    selection, and the DDP backend when launched with several processes."""
    steps = cfg.eval_strategy == "steps"
    return trainer_arguments(
        output_dir,
        seed,
        cfg,
        precision,
        lr_scheduler_type=cfg.lr_scheduler_type,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        num_train_epochs=cfg.epochs,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy=cfg.eval_strategy,
        save_strategy=cfg.eval_strategy,
        eval_steps=cfg.eval_steps if steps else None,
        save_steps=cfg.eval_steps if steps else 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=cfg.metric_for_best_model,
        greater_is_better=cfg.metric_for_best_model != "loss",
        dataloader_num_workers=cfg.dataloader_num_workers,
        # several processes (torchrun / accelerate launch): NCCL between GPUs, gloo between CPU processes
        ddp_backend=("nccl" if cuda_available() else "gloo") if distributed else None,
        # The classifier's loss is a per-batch mean; averaging token counts across devices would
        # scale it (and its gradients) by the number of processes (measured: 2x with 2 processes).
        average_tokens_across_devices=False,
    )


def decoder_arguments(cfg: GeneratorFinetuneConfig, seed: int, output_dir: Path, precision: str) -> Any:
    """The generator's arguments: a fixed number of steps, linear decay, length-grouped batches,
    checkpoints every ``save_steps`` (one kept) for resuming."""
    return trainer_arguments(
        output_dir,
        seed,
        cfg,
        precision,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
    )


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def device_name() -> str:
    """``cuda`` when a GPU is present, else ``cpu``."""
    return "cuda" if cuda_available() else "cpu"


def run_key(payload: dict[str, Any]) -> str:
    """A short digest of what makes two runs the same run: same key, same checkpoint folder, so a
    restarted run resumes."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def out_of_memory_error(exc: BaseException, batch_size: int, device: str) -> BaseException:
    """A one-line PipelineError for out-of-memory failures; other errors pass through unchanged."""
    text = str(exc).lower()
    if "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text:
        return PipelineError(
            f"train.per_device_train_batch_size: {batch_size} does not fit in {device} memory; lower it "
            "(and raise train.gradient_accumulation_steps to keep the effective batch size)"
        )
    return exc


class MlflowMetricsCallback(TrainerCallback):
    """Per-step training and per-evaluation validation metrics into the active MLflow run.

    Lighter than transformers' own MLflow integration: it logs no TrainingArguments or model
    config (the run already holds params.yaml), only numbers, asynchronously, from rank 0."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        import mlflow

        if not state.is_world_process_zero or not logs or mlflow.active_run() is None:
            return
        numbers = numeric_metrics(logs)
        if numbers:
            mlflow.log_metrics(numbers, step=state.global_step, synchronous=False)


def best_evaluation(trainer: Any) -> dict[str, float]:
    """Validation metrics of the checkpoint training ended on (the best one): read from the
    log history when that evaluation was logged, evaluated again otherwise."""
    best_step = step_of(trainer.state.best_model_checkpoint) or trainer.state.global_step
    for record in reversed(trainer.state.log_history):
        if record.get("step") == best_step and "eval_loss" in record:
            return record
    return trainer.evaluate()


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun / accelerate launch; (0, 1) alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def barrier(world_size: int) -> None:
    """Wait for every process of a multi-process run (no-op alone)."""
    import torch.distributed as dist

    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")  # a full model's, or a peft adapter's


def last_checkpoint(folder: Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete checkpoint; one cut short by a kill is removed (by rank 0) and skipped."""
    if not folder.is_dir():
        return None
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: step_of(p.name) or -1, reverse=True)
    for checkpoint in checkpoints:
        weights = any((checkpoint / name).exists() for name in WEIGHT_FILES)
        if weights and all((checkpoint / name).exists() for name in CHECKPOINT_FILES):
            return checkpoint
        if remove_incomplete:
            console.print(f"[yellow]Removing incomplete checkpoint[/] {checkpoint}")
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def step_of(checkpoint: str | None) -> int | None:
    tail = checkpoint.rsplit("-", 1)[-1] if checkpoint else ""
    return int(tail) if tail.isdigit() else None


def split_history(log_history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trainer log records -> (per-step training records, per-evaluation validation records)."""
    train_log, validation_log = [], []
    for record in log_history:
        if "loss" in record:
            train_log.append(
                {k: record[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in record}
            )
        elif "eval_loss" in record:
            validation_log.append(
                {k: v for k, v in record.items() if k == "step" or k == "epoch" or k.startswith("eval_")}
            )
    # the final evaluation of the best model repeats a step; keep per-evaluation records unique
    seen: dict[int, dict[str, Any]] = {r["step"]: r for r in validation_log}
    return train_log, list(seen.values())
