"""Training throughput: the train stage vs the textbook's pad-to-512, and vs a bare Trainer.

    python benchmarks/train_throughput.py [--imdb ../shared/imdb] [--steps 12] [--batch 8]

Same model (the offline MiniLM checkpoint with a fresh classification head), same real reviews,
same number of optimizer steps, same seed, on this machine:

1. **padding**: the stage's setup (dynamic padding + length-grouped batches, max_length 512)
   vs every review padded to 512 (random batches) - goal: at least 2x samples/s.
2. **overhead**: the whole ``train()`` stage function (MLflow run with params, dataset inputs,
   per-step metrics and system metrics, history, plots, safetensors output) vs a bare
   ``Trainer`` script with identical TrainingArguments - goal: at most 5% slower.

Samples/s is the Trainer's own ``train_samples_per_second``; end-to-end wall time is reported
beside it. Each variant runs in a fresh process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    import transformers
    from datasets import load_from_disk

    from imdb_mlops.config import load_params
    from imdb_mlops.modeling.classifier import load_pretrained_classifier
    from imdb_mlops.modeling.finetuning import classifier_arguments
    from imdb_mlops.modeling.metrics import validation_metrics
    from imdb_mlops.stages.train import train

    os.chdir(workdir)
    params = load_params(Path("params.yaml"))
    started = time.perf_counter()
    if mode == "stage":
        summary = train(params, Path("data/tokenized"), Path("data/raw"), Path("models/classifier"), Path("reports"))
        return {"samples_per_s": summary["train_samples_per_second"], "wall_s": time.perf_counter() - started}

    tokenizer = transformers.AutoTokenizer.from_pretrained(params.model.name)
    transformers.set_seed(params.seed)
    model = load_pretrained_classifier(params.model.name, params.model.name, len(tokenizer))
    data = load_from_disk("data/tokenized")
    train_set = data["train"].select_columns(["input_ids", "label"])
    eval_set = data["validation"].select_columns(["input_ids", "label"])
    training_args = classifier_arguments(params.train, params.seed, Path("bare-checkpoints"), "fp32")
    training_args.report_to = []
    if mode == "pad512":
        pad = tokenizer.pad_token_id

        def pad_to_512(batch):
            return {
                "input_ids": [ids + [pad] * (512 - len(ids)) for ids in batch["input_ids"]],
                "attention_mask": [[1] * len(ids) + [0] * (512 - len(ids)) for ids in batch["input_ids"]],
            }

        train_set, eval_set = train_set.map(pad_to_512, batched=True), eval_set.map(pad_to_512, batched=True)
        training_args.train_sampling_strategy = "random"
        collator = transformers.default_data_collator
    else:
        collator = transformers.DataCollatorWithPadding(tokenizer)
    trainer = transformers.Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=validation_metrics(),
    )
    result = trainer.train()
    trainer.model.save_pretrained("bare-model")
    return {"samples_per_s": result.metrics["train_samples_per_second"], "wall_s": time.perf_counter() - started}


def prepare(args: argparse.Namespace, workdir: Path) -> None:
    """Ingest and tokenize N real reviews once, with params for a fixed number of steps."""
    import yaml

    from imdb_mlops.config import validate_params
    from imdb_mlops.modeling.pretrained import packaged_minilm_path as offline_model_path
    from imdb_mlops.registry.tracking import setup_mlflow
    from imdb_mlops.stages.ingest import ingest
    from imdb_mlops.stages.tokenize import tokenize

    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    samples = args.steps * args.batch
    tree["data"].update(source=str(args.imdb.resolve()), max_samples={"train": samples, "validation": 50, "test": 50})
    tree["model"]["name"] = str(offline_model_path())
    tree["tokenize"].update(max_length=512, num_proc=1)
    tree["train"].update(
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        eval_strategy="steps",
        eval_steps=args.steps,
        logging_steps=1,
        early_stopping_patience=0,
        save_total_limit=1,
    )
    (workdir / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    params = validate_params(tree)
    os.chdir(workdir)
    ingest(params, Path("data/raw"), Path("reports/data.json"))
    tokenize(params, Path("data/raw"), Path("data/tokenized"), Path("reports/tokenize.json"))
    # An existing store, as after a project's first run (creating the tables takes seconds).
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    setup_mlflow(params.tracking)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args, args.workdir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prepare(args, workdir)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        results = {}
        for mode in ("pad512", "bare", "stage"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    "--workdir",
                    str(workdir),
                    "--imdb",
                    str(args.imdb),
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{mode:<7} {results[mode]['samples_per_s']:6.2f} samples/s  {results[mode]['wall_s']:6.1f} s wall",
                file=sys.stderr,
            )
    summary = {
        "steps": args.steps,
        "batch": args.batch,
        "cpu_cores": os.cpu_count(),
        "results": results,
        "stage_vs_pad512": round(results["stage"]["samples_per_s"] / results["pad512"]["samples_per_s"], 2),
        "stage_overhead_train_loop": round(1 - results["stage"]["samples_per_s"] / results["bare"]["samples_per_s"], 3),
        "stage_overhead_wall": round(results["stage"]["wall_s"] / results["bare"]["wall_s"] - 1, 3),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
