"""Generate stage: a causal LM fine-tuned with sentiment control codes, its reviews scored by the
trained classifier.

Entry point: :func:`generate`. Steps:

1. **read** the ingested train and validation reviews and the trained classifier (first, so a
   missing classifier fails before minutes of fine-tuning); load ``generation.model`` with the
   control codes ``<|negative|>``/``<|positive|>`` added (:mod:`imdb_mlops.modeling.decoder`);
2. **compute**: held-out perplexity, fine-tuning on training reviews each prefixed with its code
   (optionally also unlabelled reviews, without a code), perplexity again; then
   ``samples_per_sentiment`` reviews per sentiment from ``prompts`` (batched, left-padded, KV cache,
   seeded; :mod:`imdb_mlops.modeling.textgen`), each scored by the classifier: control accuracy and
   diversity (:mod:`imdb_mlops.modeling.metrics`);
3. **log** an MLflow run (params, training curve, metrics, the samples as a table) and **register** the
   generator as a version of ``generation.registered_model`` (a pyfunc written as code:
   :mod:`imdb_mlops.serving.generator_model`; ``champion`` on the first version, ``challenger`` after);
4. **write**, together: ``models/generator`` (safetensors + tokenizer), ``reports/generation.json``
   (DVC metrics) and ``reports/generated.jsonl``; **print** the metrics and a few reviews.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, refuse_foreign_targets, write_json, write_jsonl
from imdb_mlops.common.labels import LABELS
from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import GenerationConfig, Params
from imdb_mlops.data.sampling import stratified_sample
from imdb_mlops.data.sources import read_unlabelled
from imdb_mlops.data.splits import read_split
from imdb_mlops.modeling.capabilities import capability_tags, choose_precision
from imdb_mlops.modeling.classifier import load_trained_classifier, predict_positive
from imdb_mlops.modeling.decoder import check_lengths, finetune, load_generator, perplexity
from imdb_mlops.modeling.encoding import encode_texts
from imdb_mlops.modeling.finetuning import CHECKPOINT_ROOT, device_name
from imdb_mlops.modeling.metrics import control_report, distinct_n
from imdb_mlops.modeling.pretrained import checkpoint_provenance
from imdb_mlops.modeling.textgen import CONTROL_CODES, SENTIMENTS, GenerationRequestError, generate_texts
from imdb_mlops.registry.aliases import current_champion, set_champion
from imdb_mlops.registry.model_card import CARD_ARTIFACT, as_description, generator_card, portable_name
from imdb_mlops.registry.publish import ModelPackage, ensure_registered_model, log_and_register, pinned_requirements
from imdb_mlops.registry.tracking import dvc_lock_hashes, git_commit, read_run_file, setup_mlflow
from imdb_mlops.registry.versions import CHALLENGER
from imdb_mlops.serving.settings import (
    GENERATOR_INPUT_EXAMPLE,
    GENERATOR_MODEL_FILE,
    GENERATOR_REQUIREMENTS,
    generator_settings,
    generator_signature,
)

console = Console(stderr=True)
MODEL_DESCRIPTION = (
    "IMDB-style movie reviews of a requested sentiment (control codes), registered by the DVC generate "
    "stage; people promote 'champion'."
)


def generate(
    params: Params,
    raw_dir: Path,
    classifier_dir: Path,
    out_dir: Path,
    report_path: Path,
    samples_path: Path,
    run_file: Path | None = None,
    checkpoint_root: Path = CHECKPOINT_ROOT,
) -> dict[str, Any]:
    """Run the stage; returns the report written to ``report_path``."""
    refuse_foreign_targets(out_dir, report_path, samples_path, owner="build-generator")
    import mlflow
    import transformers

    cfg = params.generation
    stage_started = time.perf_counter()
    # --- read
    train_frame = read_split(raw_dir, "train")
    held_out = stratified_sample(read_split(raw_dir, "validation"), cfg.perplexity_samples, params.seed)
    classifier, classifier_tokenizer = load_trained_classifier(classifier_dir)
    transformers.set_seed(params.seed)
    model, tokenizer = load_generator(cfg, params.hub, params.seed, train_frame["text"].tolist())
    check_lengths(cfg, model)
    device = device_name()
    model.to(device)

    # --- compute (fine-tuning and samples tracked in the stage's own MLflow run)
    precision = choose_precision(cfg.decoding.precision, device, "generation.decoding.precision")
    perplexity_texts, perplexity_labels = held_out["text"].tolist(), [int(v) for v in held_out["label"]]
    held_out_args = (perplexity_texts, perplexity_labels, cfg.finetune.block_size, cfg.finetune.review_part, precision)
    before = perplexity(model, tokenizer, *held_out_args)
    console.print(f"Perplexity on {len(perplexity_texts)} held-out reviews before fine-tuning: {before:.2f}")
    experiment_id = setup_mlflow(params.tracking)
    with mlflow.start_run(experiment_id=experiment_id, run_name="generate") as run:
        log_inputs(params, run_file)
        training: dict[str, Any] = {"enabled": cfg.finetune.enabled}
        if cfg.finetune.enabled:
            texts, sentiments = training_texts(params, train_frame)
            training = finetune(cfg, params.seed, model, tokenizer, texts, sentiments, checkpoint_root, device)
        after = perplexity(model, tokenizer, *held_out_args) if cfg.finetune.enabled else before
        console.print(f"Perplexity after fine-tuning: {after:.2f}")

        requests = generation_requests(cfg)
        started = time.perf_counter()
        texts, new_tokens = generate_with_progress(model, tokenizer, requests, cfg)
        seconds = time.perf_counter() - started
        positive = score_texts(params, classifier, classifier_tokenizer, texts)
        samples = sample_records(requests, texts, positive)
        report = {
            "model": cfg.model,
            "n": len(samples),
            **sample_metrics(samples),
            "perplexity_before": round(before, 4),
            "perplexity_after": round(after, 4),
            "perplexity_reviews": len(perplexity_texts),
            "new_tokens": new_tokens,
            "new_tokens_per_second": round(new_tokens / seconds, 2) if seconds > 0 else None,
            "generation_seconds": round(seconds, 2),
            "guidance_scale": cfg.decoding.guidance_scale,
            "decoding_precision": precision,
            "device": device,
            "training": training,
        }
        # from reading to scores (registration and writing follow)
        report["stage_seconds"] = round(time.perf_counter() - stage_started, 1)
        # --- log
        mlflow.log_metrics(numeric_metrics(report))
        mlflow.log_table(pd.DataFrame(samples), artifact_file="generated_samples.json")

        # --- write (and register the written model)
        with atomic_outputs(out_dir, report_path, samples_path, owner="build-generator") as (
            tmp_model,
            tmp_report,
            tmp_samples,
        ):
            model.to("cpu")
            model.save_pretrained(tmp_model, safe_serialization=True)
            tokenizer.save_pretrained(tmp_model)
            write_json(tmp_model / "generation_settings.json", generator_settings(cfg))
            version = register_generator(params, tmp_model, run.info.run_id)
            report.update({"run_id": run.info.run_id, "registered_model": cfg.registered_model, **version})
            publish_generator_card(params, report, samples)
            write_json(tmp_report, report)
            write_jsonl(tmp_samples, samples)
    # --- print
    print_report(report, samples)
    return report


def training_texts(params: Params, train_frame: pd.DataFrame) -> tuple[list[str], list[str | None]]:
    """Labelled training reviews (stratified sample) with their sentiment, plus unlabelled ones."""
    cfg = params.generation.finetune
    labelled = stratified_sample(train_frame, cfg.train_samples, params.seed)
    texts = labelled["text"].tolist()
    sentiments: list[str | None] = [LABELS[int(label)] for label in labelled["label"]]
    if cfg.unlabelled_samples:
        unlabelled = read_unlabelled(params.data, params.hub, cfg.unlabelled_samples, params.seed)
        texts += unlabelled
        sentiments += [None] * len(unlabelled)
    return texts, sentiments


def score_texts(params: Params, classifier: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """P(positive) of each text by the trained classifier, cut exactly as in its training."""
    ids = encode_texts(tokenizer, params.tokenize, texts)
    return predict_positive(classifier, tokenizer, ids, params.evaluate.batch_size, "generated reviews")


def sample_metrics(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Control accuracy (overall and per sentiment, with 95% intervals), the share scored >= 0.9 for
    the asked sentiment, and diversity of the generated reviews."""
    texts = [s["text"] for s in samples]
    return {
        **control_report(samples, tuple(reversed(SENTIMENTS))),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
    }


def publish_generator_card(params: Params, report: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    """The generator version's model card: its description and the run's ``model_card.md``."""
    import mlflow
    from mlflow import MlflowClient

    facts = {
        "model_name": report["registered_model"],
        "version": report["version"],
        "run_id": report["run_id"],
        "base_model": portable_name(params.generation.model, key="generation.model"),
        "report": {**report, "samples": samples},
    }
    card = generator_card(facts)
    MlflowClient().update_model_version(report["registered_model"], str(report["version"]), as_description(card))
    mlflow.log_text(card, CARD_ARTIFACT)


def register_generator(params: Params, model_dir: Path, run_id: str) -> dict[str, Any]:
    """Log the generator as a pyfunc (written as code) into ``run_id`` and register a version:
    ``champion`` when it is the first, else ``challenger`` (people promote generators)."""
    from mlflow import MlflowClient

    cfg = params.generation
    client = MlflowClient()
    ensure_registered_model(client, cfg.registered_model, MODEL_DESCRIPTION)
    package = ModelPackage(
        name="generator",
        python_model=GENERATOR_MODEL_FILE,
        artifacts={"generator": str(model_dir)},
        signature=generator_signature(cfg.decoding),
        input_example=GENERATOR_INPUT_EXAMPLE,
        requirements=pinned_requirements(GENERATOR_REQUIREMENTS),
    )
    tags = {"generation_run_id": run_id, "generation.model": cfg.model, **base_model_tags(params)}
    number = str(log_and_register(client, run_id, package, cfg.registered_model, tags).version)
    if current_champion(client, cfg.registered_model) is None:
        set_champion(client, cfg.registered_model, number, "first registered generator", "generate-stage")
    else:
        client.set_registered_model_alias(cfg.registered_model, CHALLENGER, number)
    aliases = sorted(client.get_model_version(cfg.registered_model, number).aliases)
    console.print(f"Registered {cfg.registered_model} version {number} ({', '.join(aliases)}).")
    return {"version": int(number), "aliases": aliases}


def generation_requests(cfg: GenerationConfig) -> list[tuple[str, str]]:
    """(sentiment, prompt) pairs: ``samples_per_sentiment`` per sentiment, prompts in turn."""
    return [
        (sentiment, cfg.prompts[i % len(cfg.prompts)])
        for sentiment in SENTIMENTS
        for i in range(cfg.samples_per_sentiment)
    ]


def generate_with_progress(
    model: Any, tokenizer: Any, requests: list[tuple[str, str]], cfg: GenerationConfig
) -> tuple[list[str], int]:
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("Generating reviews", total=len(requests))
        try:
            return generate_texts(model, tokenizer, requests, cfg.decoding, lambda n: bar.advance(task, n))
        except GenerationRequestError as exc:
            raise PipelineError(f"generation.decoding.{exc}") from None


def sample_records(requests: list[tuple[str, str]], texts: list[str], positive: np.ndarray) -> list[dict[str, Any]]:
    records = []
    for (sentiment, prompt), text, p in zip(requests, texts, positive, strict=True):
        label = LABELS[int(p >= 0.5)]
        records.append(
            {
                "sentiment": sentiment,
                "control_code": CONTROL_CODES[sentiment],
                "prompt": prompt,
                "text": text,
                "classifier_label": label,
                "classifier_probability": round(float(p if label == LABELS[1] else 1 - p), 6),
                "on_target": label == sentiment,
            }
        )
    return records


def base_model_tags(params: Params) -> dict[str, str]:
    """A packaged base model's package, version and file digest (e.g. the SmolLM2 GGUF), for lineage."""
    provenance = checkpoint_provenance(params.generation.model, "generation.model")
    return {f"generation.model.{key}": value for key, value in provenance.items()}


def log_inputs(params: Params, run_file: Path | None) -> None:
    import mlflow

    flat = {k: ("null" if v is None else v) for k, v in params.flat().items() if k.startswith("generation.")}
    flat["seed"] = params.seed
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
    tags = {
        **git_commit(),
        **dvc_lock_hashes(("ingest", "train")),
        "stage": "generate",
        "generation.model": params.generation.model,
        **base_model_tags(params),
        **capability_tags(),
    }
    if run_file is not None and run_file.exists():
        tags["classifier_run_id"] = read_run_file(run_file)["run_id"]  # the scorer of the generated reviews
    mlflow.set_tags(tags)


def print_report(report: dict[str, Any], samples: list[dict[str, Any]], shown: int = 3) -> None:
    table = Table(title=f"Generated reviews ({report['n']}, {report['device']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("control_accuracy", "control_accuracy_positive", "control_accuracy_negative"):
        low, high = report[f"{key}_ci_low"], report[f"{key}_ci_high"]
        table.add_row(key.replace("_", " ") + " (95% CI)", f"{report[key]:.3f} ({low:.3f}-{high:.3f})")
    for key in (
        "confident_share",
        "distinct_1",
        "distinct_2",
        "perplexity_before",
        "perplexity_after",
        "new_tokens_per_second",
        "decoding_precision",
        "stage_seconds",
    ):
        value = report.get(key)
        label = "scored >= 0.9 as asked" if key == "confident_share" else key.replace("_", " ")
        table.add_row(label, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row(
        "registered",
        f"{report.get('registered_model')} v{report.get('version')} ({', '.join(report.get('aliases', []))})",
    )
    console.print(table)
    examples = Table(title="Examples", show_lines=True)
    for column in ("asked", "text", "classifier"):
        examples.add_column(column)
    for sentiment in SENTIMENTS:
        for sample in [s for s in samples if s["sentiment"] == sentiment][:shown]:
            colour = "green" if sample["on_target"] else "red"
            text = sample["text"] if len(sample["text"]) <= 200 else sample["text"][:197] + "..."
            examples.add_row(
                sentiment, text, f"[{colour}]{sample['classifier_label']} {sample['classifier_probability']:.2f}[/]"
            )
    console.print(examples)
