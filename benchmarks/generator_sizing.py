"""Generator fine-tuning setups for the quick run: seconds per step and the quality bars, each
through the generate stage itself.

    python benchmarks/generator_sizing.py --setup NAME KEY=VALUE [KEY=VALUE ...] [--setup ...] \
        [--profile cpu-quick] [--steps-only] [--out FILE]

Each ``--setup`` is a name and ``-S``-style overrides on top of ``params.yaml`` + the offline sources +
``--profile`` (as ``imdb-mlops exp-run --offline --profile cpu-quick`` resolves them). For each, the
generate stage's own :func:`imdb_mlops.stages.generate.generate` runs in a temporary folder with a
temporary MLflow store, on the workspace's ingested reviews (``data/raw``) and trained classifier
(``models/classifier``): fine-tuning, held-out perplexity, guided decoding, scoring. Reported: seconds
per fine-tuning step, the stage's seconds, control accuracy (overall and per sentiment) and distinct-2.
``--steps-only`` fine-tunes a few steps of each setup and reports seconds per step only.
The CPU's flags and the precision chosen are printed with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", nargs="+", action="append", required=True, metavar=("NAME", "KEY=VALUE"))
    parser.add_argument("--profile", action="append", default=None)
    parser.add_argument("--steps-only", type=int, default=0, help="fine-tune this many steps, time them, stop")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--extra-guidance", type=float, nargs="*", default=[], help="also decode and score at these guidance scales"
    )
    args = parser.parse_args()

    from imdb_mlops.config.overrides import parse_assignments, with_overrides
    from imdb_mlops.modeling.capabilities import capability_tags
    from imdb_mlops.orchestration.experiments import experiment_overrides

    caps = capability_tags()
    print("CPU:", caps["cpu.model"], "| flags:", caps["cpu.flags"], flush=True)
    profiles = args.profile if args.profile is not None else ["cpu-quick"]
    rows = []
    for name, *assignments in args.setup:
        overrides = experiment_overrides(REPO / "params.yaml", profiles, assignments, True, "../shared/imdb")
        if args.steps_only:
            overrides |= parse_assignments([f"generation.finetune.max_steps={args.steps_only}"])
        params = with_overrides(REPO / "params.yaml", overrides)
        row = {"setup": name, "overrides": assignments, **run_setup(params, bool(args.steps_only), args.extra_guidance)}
        row["cpu_flags"] = caps["cpu.flags"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps({"capabilities": caps, "rows": rows}, indent=1) + "\n")


def run_setup(params, steps_only: bool, extra_guidance: list[float]) -> dict:
    from imdb_mlops.stages.generate import generate

    with tempfile.TemporaryDirectory(prefix="gen-sizing-") as tmp:
        work = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        began = time.perf_counter()
        if steps_only:
            params = params.model_copy(
                update={
                    "generation": params.generation.model_copy(
                        update={
                            "samples_per_sentiment": 2,
                            "perplexity_samples": 8,
                            "decoding": params.generation.decoding.model_copy(update={"max_new_tokens": 4}),
                        }
                    )
                }
            )
        report = generate(
            params,
            REPO / "data/raw",
            REPO / "models/classifier",
            work / "generator",
            work / "generation.json",
            work / "generated.jsonl",
            None,
            work / "checkpoints",
        )
        wall = time.perf_counter() - began
        guided = {scale: decode_again(params, work / "generator", scale) for scale in extra_guidance}
    training = report["training"]
    seconds_per_step = training["train_runtime_s"] / max(training["steps"], 1)
    row = {
        "method": training.get("method"),
        "precision": training.get("precision"),
        "steps": training["steps"],
        "seconds_per_step": round(seconds_per_step, 2),
        "train_runtime_s": training["train_runtime_s"],
        "trainable_parameters": training.get("trainable_parameters"),
    }
    if not steps_only:
        row |= {
            key: report[key]
            for key in (
                "control_accuracy",
                "control_accuracy_positive",
                "control_accuracy_negative",
                "distinct_2",
                "perplexity_after",
                "generation_seconds",
                "stage_seconds",
            )
        }
        row["wall_s"] = round(wall, 1)
        row["other_guidance"] = guided
    return row


def decode_again(params, model_dir: Path, scale: float) -> dict:
    """The fine-tuned generator's reviews again at guidance ``scale``, scored as the stage scores them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imdb_mlops.modeling.classifier import load_trained_classifier
    from imdb_mlops.stages.generate import (
        generate_with_progress,
        generation_requests,
        sample_metrics,
        sample_records,
        score_texts,
    )

    cfg = params.generation
    cfg = cfg.model_copy(update={"decoding": cfg.decoding.model_copy(update={"guidance_scale": scale})})
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    requests = generation_requests(cfg)
    began = time.perf_counter()
    texts, _ = generate_with_progress(model, tokenizer, requests, cfg)
    seconds = time.perf_counter() - began
    classifier, classifier_tokenizer = load_trained_classifier(REPO / "models/classifier")
    metrics = sample_metrics(
        sample_records(requests, texts, score_texts(params, classifier, classifier_tokenizer, texts))
    )
    keys = ("control_accuracy", "control_accuracy_positive", "control_accuracy_negative", "distinct_2")
    return {**{key: metrics[key] for key in keys}, "generation_seconds": round(seconds, 1)}


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
