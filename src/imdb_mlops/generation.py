"""Generate stage: GPT-2 fine-tuned with sentiment control codes, its reviews scored by the classifier.

Entry point: :func:`generate`. It

1. loads ``generation.model`` (hub id or local folder, same ``from_pretrained`` call; ``scratch``
   builds a small GPT-2 with a byte-level BPE vocabulary learned from the training reviews) and adds
   the control codes ``<|negative|>``/``<|positive|>`` to its tokenizer and embeddings;
2. measures its perplexity on held-out (validation) reviews, fine-tunes it with the HF Trainer on
   training reviews each prefixed with its code (optionally also unlabelled reviews, without a code),
   and measures the perplexity again;
3. generates ``samples_per_sentiment`` reviews per sentiment from ``prompts`` (batched, left-padded,
   KV cache, seeded) and scores every one with the trained classifier: control accuracy (share the
   classifier labels with the intended sentiment) and diversity (distinct-1, distinct-2);
4. logs an MLflow run (params, training curve, metrics, the samples as a table, the generator as a
   pyfunc written as code: :mod:`imdb_mlops.generator_model`) and registers it as a version of
   ``generation.registered_model`` (alias ``champion`` on the first version, ``challenger`` after).

Outputs, written together: ``models/generator`` (safetensors + tokenizer), ``reports/generation.json``
(DVC metrics) and ``reports/generated.jsonl`` (one generated review per line).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from imdb_mlops.config import GenerationConfig, Params
from imdb_mlops.errors import PipelineError
from imdb_mlops.outputs import atomic_outputs, write_json
from imdb_mlops.pretrained import unpadded_backend
from imdb_mlops.textgen import CONTROL_CODES, SENTIMENTS, GenerationRequestError, add_control_codes, context_length

console = Console(stderr=True)
KEY = "generation.model"
PACKAGE_DIR = Path(__file__).resolve().parent
GENERATOR_MODEL_FILE = PACKAGE_DIR / "generator_model.py"
CHECKPOINT_ROOT = Path("models/checkpoints")
LABELS = ["negative", "positive"]
SERVING_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "pandas", "pydantic")


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
    import mlflow
    import torch
    import transformers

    from imdb_mlops.evaluation import load_trained
    from imdb_mlops.tracking import setup_mlflow

    cfg = params.generation
    train_frame = _read_split(raw_dir, "train")
    held_out = _read_split(raw_dir, "validation")
    classifier, classifier_tokenizer = load_trained(classifier_dir)  # fail before minutes of fine-tuning
    transformers.set_seed(params.seed)
    model, tokenizer = load_generator(cfg, params, train_frame["text"].tolist())
    check_lengths(cfg, model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)

    perplexity_texts, perplexity_labels = _sample(held_out, cfg.perplexity_samples, params.seed)
    block = cfg.finetune.block_size
    before = perplexity(model, tokenizer, perplexity_texts, perplexity_labels, block)
    console.print(f"Perplexity on {len(perplexity_texts)} held-out reviews before fine-tuning: {before:.2f}")

    experiment_id = setup_mlflow(params)
    with mlflow.start_run(experiment_id=experiment_id, run_name="generate") as run:
        _log_inputs(params, run_file)
        training: dict[str, Any] = {"enabled": cfg.finetune.enabled}
        if cfg.finetune.enabled:
            training = finetune(params, model, tokenizer, train_frame, checkpoint_root, device)
        after = perplexity(model, tokenizer, perplexity_texts, perplexity_labels, block) if cfg.finetune.enabled else before
        console.print(f"Perplexity after fine-tuning: {after:.2f}")

        requests = generation_requests(cfg)
        started = time.perf_counter()
        texts, new_tokens = _generate_with_progress(model, tokenizer, requests, cfg)
        seconds = time.perf_counter() - started
        positive = score_texts(params, classifier, classifier_tokenizer, texts)
        samples = sample_records(requests, texts, positive)
        report = {
            "model": cfg.model,
            "n": len(samples),
            "control_accuracy": control_accuracy(samples),
            "control_accuracy_positive": control_accuracy([s for s in samples if s["sentiment"] == "positive"]),
            "control_accuracy_negative": control_accuracy([s for s in samples if s["sentiment"] == "negative"]),
            "distinct_1": distinct_n([s["text"] for s in samples], 1),
            "distinct_2": distinct_n([s["text"] for s in samples], 2),
            "perplexity_before": round(before, 4),
            "perplexity_after": round(after, 4),
            "perplexity_reviews": len(perplexity_texts),
            "new_tokens": new_tokens,
            "new_tokens_per_second": round(new_tokens / seconds, 2) if seconds > 0 else None,
            "device": device,
            "training": training,
        }
        mlflow.log_metrics({k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_table(pd.DataFrame(samples), artifact_file="generated_samples.json")

        with atomic_outputs(out_dir, report_path, samples_path) as (tmp_model, tmp_report, tmp_samples):
            model.to("cpu")
            model.save_pretrained(tmp_model, safe_serialization=True)
            tokenizer.save_pretrained(tmp_model)
            write_json(tmp_model / "generation_settings.json", serving_settings(cfg))
            version = register_generator(params, tmp_model, run.info.run_id)
            report.update(
                {"run_id": run.info.run_id, "registered_model": cfg.registered_model, **version}
            )
            write_json(tmp_report, report)
            tmp_samples.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
    print_report(report, samples)
    return report


# --- the model ---------------------------------------------------------------------------


def load_generator(cfg: GenerationConfig, params: Params, train_texts: list[str]) -> tuple[Any, Any]:
    """The causal LM and its tokenizer, with the control codes added."""
    if cfg.model == "scratch":
        model, tokenizer = scratch_generator(cfg, train_texts, params.seed)
    else:
        model, tokenizer = pretrained_generator(cfg.model, params)
    add_control_codes(model, tokenizer)
    return model, tokenizer


def pretrained_generator(name: str, params: Params) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from imdb_mlops.pretrained import resolve_pretrained, tokenizer_from

    source = resolve_pretrained(name, params.hub, KEY)
    if Path(source).is_dir() and not (Path(source) / "config.json").exists():
        raise PipelineError(f"{KEY}: '{name}' has no config.json; not a transformers checkpoint folder")
    tokenizer = tokenizer_from(source, name, KEY)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"{KEY}: '{name}' has an unusable config.json: {str(exc).splitlines()[0][:200]}") from None
    if getattr(config, "is_encoder_decoder", False) or config.model_type in ("bert", "distilbert", "roberta"):
        raise PipelineError(f"{KEY}: '{name}' is a {config.model_type} model; a decoder-only causal LM (e.g. gpt2) is needed")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, config=config, trust_remote_code=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PipelineError(f"{KEY}: '{name}' cannot be loaded as a causal LM: {str(exc).splitlines()[0][:200]}") from None
    if tokenizer.eos_token is None:
        raise PipelineError(f"{KEY}: the tokenizer of '{name}' has no end-of-text token (eos_token)")
    return model, tokenizer


def scratch_generator(cfg: GenerationConfig, train_texts: list[str], seed: int) -> tuple[Any, Any]:
    """A randomly initialised GPT-2 of ``generation.scratch``'s size, with a byte-level BPE
    vocabulary learned from (a seeded sample of) the training reviews."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    rng = np.random.default_rng(seed)
    texts = train_texts
    if len(texts) > cfg.scratch.tokenizer_samples:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), cfg.scratch.tokenizer_samples, replace=False))]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=cfg.scratch.vocab_size, min_frequency=2, special_tokens=[eos], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos)
    size = cfg.scratch
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=size.n_positions,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    console.print(
        f"Built a GPT-2 from scratch: {size.n_layer} layers, width {size.n_embd}, {len(tokenizer)} tokens "
        f"(BPE learned from {len(texts)} training reviews)"
    )
    return GPT2LMHeadModel(config), tokenizer


def check_lengths(cfg: GenerationConfig, model: Any) -> None:
    limit = context_length(model)
    if cfg.finetune.block_size > limit:
        raise PipelineError(
            f"generation.finetune.block_size: {cfg.finetune.block_size} exceeds the context of '{cfg.model}' ({limit} tokens)"
        )
    if cfg.decoding.max_new_tokens >= limit:
        raise PipelineError(
            f"generation.decoding.max_new_tokens: {cfg.decoding.max_new_tokens} exceeds the context of "
            f"'{cfg.model}' ({limit} tokens, prompt included)"
        )


# --- fine-tuning -------------------------------------------------------------------------


def lm_sequences(tokenizer: Any, texts: list[str], sentiments: list[str | None], block_size: int) -> list[list[int]]:
    """``<code> review <eos>`` token ids per review, cut to ``block_size`` (no eos when cut)."""
    eos = tokenizer.eos_token_id
    encoded = unpadded_backend(tokenizer).encode_batch_fast(texts, add_special_tokens=False)
    sequences = []
    for encoding, sentiment in zip(encoded, sentiments, strict=True):
        prefix = [tokenizer.convert_tokens_to_ids(CONTROL_CODES[sentiment])] if sentiment else []
        ids = prefix + encoding.ids + [eos]
        sequences.append(ids[:block_size])
    return sequences


def training_texts(params: Params, train_frame: pd.DataFrame) -> tuple[list[str], list[str | None]]:
    """Labelled training reviews (stratified sample) with their sentiment, plus unlabelled ones."""
    cfg = params.generation.finetune
    texts, labels = _sample(train_frame, cfg.train_samples, params.seed)
    sentiments: list[str | None] = [LABELS[label] for label in labels]
    if cfg.unlabelled_samples:
        unlabelled = read_unlabelled(params, cfg.unlabelled_samples)
        texts += unlabelled
        sentiments += [None] * len(unlabelled)
    return texts, sentiments


def finetune(params: Params, model: Any, tokenizer: Any, train_frame: pd.DataFrame, checkpoint_root: Path, device: str) -> dict[str, Any]:
    """Causal-LM fine-tuning with the Trainer; resumes from the last checkpoint of the same setup."""
    import transformers
    from datasets import Dataset

    from imdb_mlops.train import MlflowMetricsCallback, _last_checkpoint, choose_precision, split_history

    cfg = params.generation.finetune
    texts, sentiments = training_texts(params, train_frame)
    sequences = lm_sequences(tokenizer, texts, sentiments, cfg.block_size)
    dataset = Dataset.from_dict({"input_ids": sequences, "labels": sequences})
    key = hashlib.sha256(
        json.dumps({"g": params.generation.model_dump(exclude={"decoding", "prompts"}), "seed": params.seed, "n": len(texts),
                    "head": texts[:3]}, sort_keys=True).encode()
    ).hexdigest()[:12]
    checkpoint_dir = checkpoint_root / f"generator-{key}"
    last = _last_checkpoint(checkpoint_dir)
    if last:
        console.print(f"[bold]Resuming[/] generator fine-tuning from {last}")
    precision = choose_precision(cfg.precision, device)
    tokenizer.padding_side = "right"
    args = transformers.TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        train_sampling_strategy="group_by_length",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device != "cuda",
        seed=params.seed,
        data_seed=params.seed,
        report_to=[],
        disable_tqdm=False,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=transformers.DataCollatorForSeq2Seq(
            tokenizer, label_pad_token_id=-100, pad_to_multiple_of=8 if device == "cuda" else None
        ),
        callbacks=[MlflowMetricsCallback()],
    )
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    train_log, _ = split_history(trainer.state.log_history)
    return {
        "enabled": True,
        "reviews": len(texts),
        "unlabelled_reviews": sum(s is None for s in sentiments),
        "steps": trainer.state.global_step,
        "final_loss": train_log[-1]["loss"] if train_log else None,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 3),
        "precision": precision,
    }


def perplexity(model: Any, tokenizer: Any, texts: list[str], labels: list[int], block_size: int, batch_size: int = 8) -> float:
    """exp(mean negative log-likelihood per review token), each review after its control code."""
    import torch

    sequences = lm_sequences(tokenizer, texts, [LABELS[label] for label in labels], block_size)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                targets[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shifted = targets[:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(loss)
            count += int((shifted != -100).sum())
    return float(np.exp(total / max(count, 1)))


# --- generating and scoring ---------------------------------------------------------------


def generation_requests(cfg: GenerationConfig) -> list[tuple[str, str]]:
    """(sentiment, prompt) pairs: ``samples_per_sentiment`` per sentiment, prompts in turn."""
    return [
        (sentiment, cfg.prompts[i % len(cfg.prompts)])
        for sentiment in SENTIMENTS
        for i in range(cfg.samples_per_sentiment)
    ]


def _generate_with_progress(model: Any, tokenizer: Any, requests: list[tuple[str, str]], cfg: GenerationConfig) -> tuple[list[str], int]:
    from imdb_mlops.textgen import generate_texts

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("Generating reviews", total=len(requests))
        try:
            return generate_texts(model, tokenizer, requests, cfg.decoding, lambda n: bar.advance(task, n))
        except GenerationRequestError as exc:
            raise PipelineError(f"generation.decoding.{exc}") from None


def score_texts(params: Params, classifier: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
    """P(positive) of each text by the trained classifier, cut exactly as in its training."""
    from imdb_mlops.evaluation import predict_positive
    from imdb_mlops.tokenization import Encoder

    ids = Encoder(tokenizer, params.tokenize)({"text": texts}).column("input_ids").to_pylist()
    return predict_positive(classifier, tokenizer, ids, params.evaluate.batch_size)


def sample_records(requests: list[tuple[str, str]], texts: list[str], positive: np.ndarray) -> list[dict[str, Any]]:
    records = []
    for (sentiment, prompt), text, p in zip(requests, texts, positive, strict=True):
        label = "positive" if p >= 0.5 else "negative"
        records.append(
            {
                "sentiment": sentiment,
                "control_code": CONTROL_CODES[sentiment],
                "prompt": prompt,
                "text": text,
                "classifier_label": label,
                "classifier_probability": round(float(p if label == "positive" else 1 - p), 6),
                "on_target": label == sentiment,
            }
        )
    return records


def control_accuracy(samples: list[dict[str, Any]]) -> float:
    """Share of generated reviews the classifier labels with the intended sentiment."""
    return round(float(np.mean([s["on_target"] for s in samples])), 4) if samples else 0.0


_WORD = re.compile(r"\w+|[^\w\s]")


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (words, lower-cased; Li et al., 2016)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


# --- tracking and registry ----------------------------------------------------------------


def serving_settings(cfg: GenerationConfig) -> dict[str, Any]:
    """Defaults of the registered generator: the decoding settings the stage used."""
    return {"decoding": cfg.decoding.model_dump(), "control_codes": CONTROL_CODES, "max_prompts_per_request": 64}


def _log_inputs(params: Params, run_file: Path | None) -> None:
    import mlflow

    from imdb_mlops.tracking import dvc_lock_hashes, git_commit, read_run_file

    flat = {k: ("null" if v is None else v) for k, v in params.flat().items() if k.startswith("generation.")}
    flat["seed"] = params.seed
    mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
    tags = {**git_commit(), **dvc_lock_hashes(("ingest", "train")), "stage": "generate", "generation.model": params.generation.model}
    if run_file is not None and run_file.exists():
        tags["classifier_run_id"] = read_run_file(run_file)["run_id"]  # the scorer of the generated reviews
    mlflow.set_tags(tags)


def register_generator(params: Params, model_dir: Path, run_id: str) -> dict[str, Any]:
    """Log the generator as a pyfunc (written as code) into ``run_id`` and register a version."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from imdb_mlops.registry import CHALLENGER, _ensure_registered_model, _requirements_of, _wait_ready, current_champion, set_champion

    cfg = params.generation
    decoding = cfg.decoding
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "sentiment")]),
        outputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "sentiment"), ColSpec("string", "text")]),
        params=ParamSchema(
            [
                ParamSpec("max_new_tokens", "long", decoding.max_new_tokens),
                ParamSpec("strategy", "string", decoding.strategy),
                ParamSpec("temperature", "double", float(decoding.temperature)),
                ParamSpec("top_k", "long", decoding.top_k),
                ParamSpec("top_p", "double", float(decoding.top_p)),
                ParamSpec("repetition_penalty", "double", float(decoding.repetition_penalty)),
                ParamSpec("seed", "long", decoding.seed),
            ]
        ),
    )
    import warnings

    warnings.filterwarnings("ignore", message=r"(?s).*Add type hints to the `predict` method")
    client = MlflowClient()
    _ensure_registered_model(client, cfg.registered_model)
    with tempfile.TemporaryDirectory(prefix="generator-") as tmp:
        code_dir = Path(tmp) / "imdb_mlops"
        shutil.copytree(PACKAGE_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        console.print(f"Logging the generator pyfunc into run {run_id[:8]} ...")
        info = mlflow.pyfunc.log_model(
            name="generator",
            python_model=str(GENERATOR_MODEL_FILE),
            artifacts={"generator": str(model_dir)},
            code_paths=[str(code_dir)],
            signature=signature,
            input_example=pd.DataFrame({"prompt": ["This movie"], "sentiment": ["positive"]}),
            pip_requirements=_requirements_of(SERVING_REQUIREMENTS),
        )
    tags = {"generation_run_id": run_id, "generation.model": cfg.model}
    model_version = mlflow.register_model(info.model_uri, cfg.registered_model, tags=tags)
    _wait_ready(client, cfg.registered_model, model_version.version)
    number = str(model_version.version)
    if current_champion(client, cfg.registered_model) is None:
        set_champion(client, cfg.registered_model, number, "first registered generator")
    else:
        client.set_registered_model_alias(cfg.registered_model, CHALLENGER, number)
    aliases = sorted(client.get_model_version(cfg.registered_model, number).aliases)
    console.print(f"Registered {cfg.registered_model} version {number} ({', '.join(aliases)}).")
    return {"version": int(number), "aliases": aliases}


# --- data --------------------------------------------------------------------------------


def _read_split(raw_dir: Path, split: str) -> pd.DataFrame:
    path = raw_dir / f"{split}.parquet"
    if not path.exists():
        raise PipelineError(f"{path}: missing; run the ingest stage first (dvc repro ingest)")
    return pd.read_parquet(path, columns=["text", "label"])


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> tuple[list[str], list[int]]:
    """Texts and labels of up to ``n`` rows, stratified by label and seeded (as the ingest stage samples)."""
    from imdb_mlops.ingest import stratified_sample

    frame = stratified_sample(frame, n, seed)
    return frame["text"].tolist(), [int(v) for v in frame["label"]]


def read_unlabelled(params: Params, n: int) -> list[str]:
    """``n`` reviews (seeded sample) of the source's unlabelled split (``unsupervised`` in IMDB)."""
    from imdb_mlops.hub import local_path

    data = params.data
    path = local_path(data.source, "data.source")
    if path is None:
        import datasets

        from imdb_mlops.hub import ensure_hub_reachable

        ensure_hub_reachable("data.source", data.source, params.hub.timeout_s)
        try:
            texts = datasets.load_dataset(data.source, split="unsupervised")[data.text_column]
        except (ValueError, KeyError, OSError) as exc:
            raise PipelineError(
                f"generation.finetune.unlabelled_samples: '{data.source}' has no unsupervised split ({str(exc).splitlines()[0][:120]})"
            ) from None
    else:
        files = sorted(path.rglob("unsupervised-*.parquet")) if path.is_dir() else []
        if not files:
            raise PipelineError(
                f"generation.finetune.unlabelled_samples: no unlabelled reviews in '{data.source}' "
                "(expected unsupervised-*.parquet, as in the hub layout); set it to 0"
            )
        texts = pd.concat([pd.read_parquet(f, columns=[data.text_column]) for f in files])[data.text_column].tolist()
    rng = np.random.default_rng(params.seed)
    chosen = sorted(rng.choice(len(texts), min(n, len(texts)), replace=False))
    cleaned = [texts[i].replace("<br />", "\n") if data.clean_html else texts[i] for i in chosen]
    return cleaned


# --- terminal ----------------------------------------------------------------------------


def print_report(report: dict[str, Any], samples: list[dict[str, Any]], shown: int = 3) -> None:
    table = Table(title=f"Generated reviews ({report['n']}, {report['device']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("control_accuracy", "control_accuracy_positive", "control_accuracy_negative", "distinct_1", "distinct_2",
                "perplexity_before", "perplexity_after", "new_tokens_per_second"):
        value = report.get(key)
        table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("registered", f"{report.get('registered_model')} v{report.get('version')} ({', '.join(report.get('aliases', []))})")
    console.print(table)
    examples = Table(title="Examples", show_lines=True)
    for column in ("asked", "text", "classifier"):
        examples.add_column(column)
    for sentiment in SENTIMENTS:
        for sample in [s for s in samples if s["sentiment"] == sentiment][:shown]:
            colour = "green" if sample["on_target"] else "red"
            text = sample["text"] if len(sample["text"]) <= 200 else sample["text"][:197] + "..."
            examples.add_row(sentiment, text, f"[{colour}]{sample['classifier_label']} {sample['classifier_probability']:.2f}[/]")
    console.print(examples)
