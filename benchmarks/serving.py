"""Serving throughput: plain PyTorch as users run it vs every shipped variant vs the served model.

    python benchmarks/serving.py [--model-dir models/classifier] [--onnx-dir models/onnx] \
        [--model-uri models:/imdb-sentiment@champion] [--n 2000] [--batch1-n 128] [--out results.json]

In one process, on the same N real test reviews (``../shared/imdb``), cut to the trained length as
the served model cuts them, in length-sorted batches, texts/s at batch 1 and 32 and accuracy for:

- plain PyTorch fp32 (``AutoModelForSequenceClassification``, default SDPA attention,
  ``torch.inference_mode``) and plain PyTorch with ``torch.autocast(dtype=bfloat16)`` where bf16 is
  native here (AMX / AVX-512 BF16, or a GPU);
- each variant: the ONNX files of ``--onnx-dir`` and PyTorch with bf16 weights (``torch_bf16``),
  through the runners the served model uses (:mod:`imdb_mlops.modeling.runtimes`);
- the served model: ``--model-uri`` when given, else the served classifier (models-from-code file,
  ONNX folder, checkpoint) logged to a temporary MLflow store and loaded back with
  ``mlflow.pyfunc.load_model``, then fed requests of 1 and 32 texts (tokenization included);
  its variant choice at load is reported.

Ratios are against plain PyTorch fp32 and against the best plain PyTorch option, from this run.
Then ONNX Runtime's session settings, one at a time, on the fastest shipped ONNX file at batch 32.
The CPU's flags are printed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def timed(logits: Callable[[np.ndarray, np.ndarray], np.ndarray], ids: list[list[int]], batch: int, pad: int):
    """(texts/s, logits) over length-sorted batches, after one untimed pass over every batch shape."""
    from imdb_mlops.modeling.runtimes import padded_batches

    batches = list(padded_batches(ids, batch, pad))
    for _, input_ids, mask in batches[:: max(1, len(batches) // 8)]:
        logits(input_ids, mask)
    out = np.empty((len(ids), 2), dtype=np.float32)
    began = time.perf_counter()
    for rows, input_ids, mask in batches:
        out[rows] = logits(input_ids, mask)
    return len(ids) / (time.perf_counter() - began), out


def served_model(args: argparse.Namespace, tmp: Path) -> Any:
    """The served classifier as ``mlflow.pyfunc.load_model`` gives it."""
    import mlflow

    if args.model_uri:
        return mlflow.pyfunc.load_model(args.model_uri)
    from imdb_mlops.config import load_params
    from imdb_mlops.registry.publish import pinned_requirements
    from imdb_mlops.serving.settings import CLASSIFIER_MODEL_FILE, CLASSIFIER_REQUIREMENTS, classifier_settings
    from imdb_mlops.stages.register import served_artifacts

    params = load_params(REPO / "params.yaml")
    params = params.model_copy(update={"tokenize": params.tokenize.model_copy(update={"max_length": args.max_length})})
    report = json.loads(args.onnx_report.read_text()) if args.onnx_report.exists() else {}
    settings = classifier_settings(params.registry, params.tokenize, args.onnx_dir, report)
    settings_path = tmp / "serving_config.json"
    settings_path.write_text(json.dumps(settings))
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CLASSIFIER_MODEL_FILE),
            artifacts=served_artifacts(args.onnx_dir, args.model_dir, settings_path, settings),
            pip_requirements=pinned_requirements(CLASSIFIER_REQUIREMENTS),
        )
    return mlflow.pyfunc.load_model(info.model_uri)


def served_timing(model: Any, texts: list[str], order: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    """texts/s of requests of ``batch`` texts (in length order), and P(positive) per text."""
    sorted_texts = [texts[i] for i in order]
    model.predict(pd.DataFrame({"text": sorted_texts[:batch]}))
    positive = np.empty(len(texts))
    began = time.perf_counter()
    for start in range(0, len(texts), batch):
        frame = model.predict(pd.DataFrame({"text": sorted_texts[start : start + batch]}))
        positive[order[start : start + batch]] = frame["positive_probability"].to_numpy()
    return len(texts) / (time.perf_counter() - began), positive


def plain_torch(model_dir: Path, device: str, autocast: bool) -> Callable:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(device).eval()

    def logits(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            out = model(
                input_ids=torch.from_numpy(input_ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
            )
        return out.logits.float().cpu().numpy()

    return logits


def ort_settings_rows(path: Path, ids: list[list[int]], pad: int) -> dict[str, float]:
    """texts/s at batch 32 of one ONNX file under ORT's defaults, the project's settings, and the
    project's settings with one thing changed."""
    import onnxruntime as ort

    from imdb_mlops.modeling.runtimes import cpu_threads, onnx_runner, ort_session_options

    plain = ort.SessionOptions()
    plain.log_severity_level = 3
    settings = {
        "ORT defaults (SessionOptions())": plain,
        f"project: {cpu_threads()} intra-op threads, 1 inter-op, all graph optimizations, arena on": ort_session_options(),
        "... but 1 intra-op thread": ort_session_options(threads=1),
        "... but basic graph optimizations only": ort_session_options(optimization="basic"),
        "... but no graph optimizations": ort_session_options(optimization="none"),
        "... but the CPU memory arena off": ort_session_options(arena=False),
    }
    return {
        name: round(timed(onnx_runner(path, "x", False, options).logits, ids, 32, pad)[0], 1)
        for name, options in settings.items()
    }


def main() -> None:
    import torch

    from imdb_mlops.modeling.capabilities import capability_tags, detect
    from imdb_mlops.modeling.runtimes import load_runner, usable_variants
    from imdb_mlops.modeling.variant_gate import positive_probabilities

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "classifier")
    parser.add_argument("--onnx-dir", type=Path, default=REPO / "models" / "onnx")
    parser.add_argument("--onnx-report", type=Path, default=REPO / "reports" / "onnx.json")
    parser.add_argument("--model-uri", help="a registered model to time as served (default: log one to a temp store)")
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--n", type=int, default=2000, help="test reviews timed at batch 32 (one review = 0.05 points)")
    parser.add_argument("--batch1-n", type=int, default=128, help="of those, reviews timed at batch 1")
    parser.add_argument("--max-length", type=int, default=256, help="the trained max length (tokenize.max_length)")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()
    for folder, what in ((args.model_dir, "config.json"), (args.onnx_dir, "export.json")):
        if not (folder / what).exists():
            sys.exit(f"{folder}: no {what}; run `imdb-mlops exp-run --offline --profile cpu-quick` first")

    caps = detect()
    gpu = caps.cuda
    device = "cuda" if gpu else "cpu"
    tags = capability_tags(caps)
    print(f"CPU: {tags['cpu.model']}; flags: {tags['cpu.flags']}; native bf16: {tags['cpu.bf16']}; "
          f"fast int8: {tags['cpu.int8']}; CUDA: {tags['cuda']}; torch threads: {torch.get_num_threads()}", flush=True)  # fmt: skip

    test = pd.read_parquet(args.imdb / "plain_text" / "test-00000-of-00001.parquet").sample(args.n, random_state=0)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        served = served_model(args, Path(tmp))
        inner = served.unwrap_python_model()
        ids = inner.token_ids(texts)
        pad = inner.settings["pad_token_id"]
        plain = {"PyTorch fp32": plain_torch(args.model_dir, device, autocast=False)}
        if caps.cpu_bf16 or gpu:
            plain["PyTorch bf16 autocast"] = plain_torch(args.model_dir, device, autocast=True)
        shipped = json.loads((args.onnx_dir / "export.json").read_text())["shipped"]
        variants = {
            f"variant {v}": load_runner(v, args.onnx_dir, args.model_dir, gpu).logits
            for v in usable_variants(shipped, caps, gpu)
        }
        for name, logits in {**plain, **variants}.items():
            b1, _ = timed(logits, ids[: args.batch1_n], 1, pad)
            b32, out = timed(logits, ids, 32, pad)
            accuracy = float(((positive_probabilities(out) >= 0.5) == labels).mean())
            rows[name] = {"batch1": b1, "batch32": b32, "accuracy": accuracy}
            print(f"{name}: {b1:.1f} / {b32:.1f} texts/s, accuracy {accuracy:.4f}", flush=True)
        order = np.argsort([len(x) for x in ids], kind="stable")
        b1, _ = served_timing(
            served, texts[: args.batch1_n], np.argsort([len(x) for x in ids[: args.batch1_n]], kind="stable"), 1
        )
        b32, positive = served_timing(served, texts, order, 32)
        name = f"served model ({inner.choice['variant']})"
        rows[name] = {"batch1": b1, "batch32": b32, "accuracy": float(((positive >= 0.5) == labels).mean())}
        onnx_files = [v for v in ("int8", "fp32") if v in shipped]
        ort_rows = (
            ort_settings_rows(args.onnx_dir / f"model.{onnx_files[0]}.onnx", ids, pad) if onnx_files and not gpu else {}
        )
    summary = report(rows, tags, inner.choice, ort_rows, args)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


def report(
    rows: dict[str, dict[str, Any]],
    tags: dict[str, str],
    choice: dict[str, Any],
    ort_rows: dict[str, float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    base = rows["PyTorch fp32"]
    best = {b: max(v[b] for k, v in rows.items() if k.startswith("PyTorch")) for b in ("batch1", "batch32")}
    table = Table(title=f"{args.n} real test reviews (batch 1: the first {args.batch1_n}); {tags['cpu.model']}")
    for column in (
        "path",
        "b1 texts/s",
        "b32 texts/s",
        "accuracy",
        "b1 vs fp32",
        "b32 vs fp32",
        "b1 vs best PyTorch",
        "b32 vs best PyTorch",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, r in rows.items():
        r["batch1_vs_fp32"], r["batch32_vs_fp32"] = r["batch1"] / base["batch1"], r["batch32"] / base["batch32"]
        r["batch1_vs_best_pytorch"], r["batch32_vs_best_pytorch"] = (
            r["batch1"] / best["batch1"],
            r["batch32"] / best["batch32"],
        )
        table.add_row(name, f"{r['batch1']:.1f}", f"{r['batch32']:.1f}", f"{r['accuracy']:.4f}",
                      f"{r['batch1_vs_fp32']:.2f}x", f"{r['batch32_vs_fp32']:.2f}x",
                      f"{r['batch1_vs_best_pytorch']:.2f}x", f"{r['batch32_vs_best_pytorch']:.2f}x")  # fmt: skip
    console = Console(width=150)  # the table is for logs and terminals alike
    console.print(table)
    speeds = ", ".join(f"{v} {s:.0f}" for v, s in choice.get("texts_per_s", {}).items())
    console.print(
        f"Served model's choice at load: {choice['variant']} ({choice['rule']}; probe texts/s: {speeds or '-'})"
    )
    if ort_rows:
        ort_table = Table(title="ONNX Runtime session settings (batch 32)")
        ort_table.add_column("settings")
        ort_table.add_column("texts/s", justify="right")
        for name, speed in ort_rows.items():
            ort_table.add_row(name, f"{speed:.1f}")
        console.print(ort_table)
    return {
        "capabilities": tags,
        "reviews": args.n,
        "batch1_reviews": args.batch1_n,
        "rows": rows,
        "choice": choice,
        "ort_settings": ort_rows,
    }


if __name__ == "__main__":
    main()
