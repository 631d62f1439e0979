"""Export stage: the trained classifier's faster variants, each gated against fp32 PyTorch.

Entry point: :func:`export`. Steps: **read** the trained model (eager attention) and
``export.gate_samples`` validation reviews; **compute** PyTorch fp32's logits (the reference), the
candidates this machine can use (:mod:`imdb_mlops.modeling.onnx_variants`: ONNX fp32 fused, int8,
fp16 on a GPU; the PyTorch checkpoint in bf16 where bf16 is native), each candidate's gate figures
(:mod:`imdb_mlops.modeling.variant_gate`) and, for those that pass, latency and throughput;
**write** the passing ONNX files with the tokenizer, ``export.json`` (what shipped) and
``reports/onnx.json`` together; **log** the figures into the training run; **print** the table. A
variant that fails is not shipped and the stage says which bound it missed and by how much; when
none passes the stage fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, refuse_foreign_targets, scratch_folder, write_json
from imdb_mlops.common.labels import LABELS
from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import ExportConfig, Params
from imdb_mlops.modeling.capabilities import Capabilities, capability_tags, detect
from imdb_mlops.modeling.classifier import load_trained_classifier
from imdb_mlops.modeling.onnx_variants import build_variants, int8_reduce_range, latency
from imdb_mlops.modeling.runtimes import (
    Runner,
    load_torch_classifier,
    onnx_gpu,
    onnx_runner,
    predict_logits,
    torch_runner,
)
from imdb_mlops.modeling.variant_gate import GateRule, gate_failures, gate_figures, positive_probabilities
from imdb_mlops.registry.tracking import reopen_run

console = Console(stderr=True)
BATCH_SIZE = 32


def export(
    params: Params,
    model_dir: Path,
    tokenized_dir: Path,
    out_dir: Path,
    report_path: Path,
    run_file: Path | None = None,
) -> dict[str, Any]:
    """Run the stage: write the passing variants to ``out_dir`` and the report; with ``run_file``
    (``reports/train_run.json``), log the gate and latency figures into the training run."""
    refuse_foreign_targets(out_dir, report_path, owner="export")
    from datasets import load_from_disk

    cfg = params.export
    caps = detect()
    gpu = onnx_gpu()
    provider = "CUDAExecutionProvider" if gpu else "CPUExecutionProvider"
    splits = load_from_disk(str(tokenized_dir))
    sample = splits["validation"].select(range(min(cfg.gate_samples, len(splits["validation"]))))
    ids, labels = sample["input_ids"], np.asarray(sample["label"])
    calibration_ids = (
        splits["train"].select(range(min(cfg.int8_calibration_samples, len(splits["train"]))))["input_ids"]
        if cfg.int8_smoothing is not None
        else []
    )

    # the raw, fused and quantized graphs: a real classifier's are hundreds of MB, and a killed
    # export's are deleted by the next run
    with scratch_folder(out_dir) as work:
        # Eager attention exports as plain MatMul/Softmax, which the ORT optimizer fuses; SDPA does not.
        model, tokenizer = load_trained_classifier(model_dir, attn_implementation="eager")
        pad_id = int(tokenizer.pad_token_id or 0)
        console.print(f"Gate reference: PyTorch fp32 on {len(ids)} validation reviews")
        reference = predict_logits(torch_runner(model, "torch_fp32", "cpu"), ids, BATCH_SIZE, pad_id)
        if calibration_ids:
            console.print(
                f"int8 smoothing (alpha {cfg.int8_smoothing}) calibrated on {len(calibration_ids)} training reviews"
            )
        candidates = build_variants(model, work, cfg, gpu=gpu, calibration=(calibration_ids, pad_id))
        report: dict[str, Any] = {
            "provider": provider,
            "gate_samples": len(ids),
            "gate_confidence": cfg.gate_confidence,
            "capabilities": capability_tags(caps),
            "int8_weight_bits": 7 if int8_reduce_range(cfg, caps) else 8,
            "int8_smoothing": cfg.int8_smoothing,
            "int8_calibration_reviews": len(calibration_ids),
            "variants": {},
        }
        shipped = []
        for name, runner in candidate_runners(candidates, model_dir, cfg, caps, gpu):
            console.print(f"Scoring the {name} variant")
            # ONNX fp32 is checked for exactness, not tested statistically: a few hundred reviews do
            n = min(cfg.fp32_check_samples, len(ids)) if name == "fp32" else len(ids)
            logits = predict_logits(runner, ids[:n], BATCH_SIZE, pad_id)
            entry = judge(name, reference[:n], logits, labels[:n], cfg)
            if name in candidates:
                entry["size_mb"] = round(candidates[name].stat().st_size / 2**20, 2)
            if entry["failed"]:
                console.print(f"[bold red]{name} not shipped:[/] {'; '.join(entry['failed'])}")
            else:
                entry.update(latency(runner, ids[: cfg.latency_samples], pad_id))
                shipped.append(name)
            report["variants"][name] = entry
        if not shipped:
            reasons = "; ".join(f"{n}: {', '.join(v['failed'])}" for n, v in report["variants"].items())
            raise PipelineError(f"export: no variant passed the gate ({reasons})")
        report["shipped"] = shipped
        with atomic_outputs(out_dir, report_path, owner="export") as (tmp_out, tmp_report):
            tmp_out.mkdir()
            for name in shipped:
                if name in candidates:
                    shutil.copy2(candidates[name], tmp_out / f"model.{name}.onnx")
            tokenizer.save_pretrained(tmp_out)
            info = {"provider": provider, "shipped": shipped, "labels": list(LABELS)}
            write_json(tmp_out / "export.json", info | {"int8_weight_bits": report["int8_weight_bits"]})
            write_json(tmp_report, report)
    if run_file is not None:
        log_to_run(params, run_file, report, report_path)
    print_report(report)
    return report


def candidate_runners(
    onnx_files: dict[str, Path], model_dir: Path, cfg: ExportConfig, caps: Capabilities, gpu: bool
) -> Any:
    """(name, runner) of every candidate, loaded one at a time: the ONNX files, then the bf16
    PyTorch variant where bf16 is native here (unless ``export.torch_bf16`` is false)."""
    for name, path in onnx_files.items():
        yield name, onnx_runner(path, name, gpu)
    if cfg.torch_bf16 and (caps.cuda_bf16 if gpu else caps.cpu_bf16):
        runner: Runner = torch_runner(load_torch_classifier(model_dir), "torch_bf16", "cuda" if gpu else "cpu")
        yield "torch_bf16", runner


def judge(
    name: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, cfg: ExportConfig
) -> dict[str, Any]:
    """The variant's gate figures and what it fails: ONNX fp32 must match PyTorch fp32 (logits within
    ``fp32_max_abs_diff``); every other variant must pass the non-inferiority gate."""
    rule = GateRule(cfg.max_accuracy_drop, cfg.gate_confidence, cfg.max_probability_diff)
    figures = gate_figures(positive_probabilities(reference), positive_probabilities(logits), labels, rule)
    max_abs_diff = float(np.abs(reference - logits).max())
    entry: dict[str, Any] = {"max_abs_diff": max_abs_diff, **figures.as_dict()}
    if name == "fp32":
        failed = []
        if max_abs_diff > cfg.fp32_max_abs_diff:
            failed.append(f"max |logit diff| {max_abs_diff:.2e} > {cfg.fp32_max_abs_diff:.0e}")
        if figures.agreement < cfg.fp32_min_agreement:
            failed.append(f"agreement {figures.agreement:.2%} < {cfg.fp32_min_agreement:.2%}")
    else:
        failed = gate_failures(figures, rule)
    entry["shipped"], entry["failed"] = not failed, failed
    return entry


def log_to_run(params: Params, run_file: Path, report: dict[str, Any], report_path: Path) -> None:
    import mlflow

    with reopen_run(params.tracking, run_file):
        figures: dict[str, float] = {}
        for name, variant in report["variants"].items():
            figures.update(numeric_metrics(variant, prefix=f"variant_{name}_"))
        mlflow.log_metrics(figures)
        mlflow.set_tags({"onnx.provider": report["provider"], "variants.shipped": ",".join(report["shipped"])})
        mlflow.log_artifact(str(report_path), "export")


def print_report(report: dict[str, Any]) -> None:
    fp32_n = report["variants"].get("fp32", {}).get("n", report["gate_samples"])
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"Variants vs PyTorch fp32 on {report['gate_samples']} validation reviews ({report['provider']})",
        caption=f"fp32: exactness on the first {fp32_n} only; change: accuracy, points; low: its one-sided "
        f"{report['gate_confidence']:.0%} lower bound; p99 dp: 99th percentile of |probability difference|",
    )
    for column in ("variant", "ship", "acc %", "change", "low", "agree %", "p99 dp", "b1 ms", "b32/s"):
        table.add_column(column, justify="left" if column in ("variant", "ship") else "right", no_wrap=True)
    for name, v in report["variants"].items():
        table.add_row(
            name,
            "yes" if v["shipped"] else "[red]no[/]",
            f"{v['accuracy'] * 100:.2f}",
            f"{v['accuracy_change'] * 100:+.2f}",
            f"{v['lower_bound'] * 100:+.2f}",
            f"{v['agreement'] * 100:.1f}",
            f"{v['probability_diff_p99']:.3f}",
            str(v.get("batch1_latency_ms_p50", "-")),
            str(round(v["batch32_texts_per_s"])) if "batch32_texts_per_s" in v else "-",
        )
    console.print(table)
