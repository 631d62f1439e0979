"""Export stage: the trained classifier as ONNX, optimized, quantized, and gated on parity.

Entry point: :func:`export`. Steps: **read** the trained model (eager attention) and
``export.parity_samples`` validation reviews; **compute** PyTorch's logits, the ONNX variants
(:mod:`imdb_mlops.modeling.onnx_variants`: fp32 fused, int8 dynamic, fp16 on a GPU), each
variant's parity figures against PyTorch and, for those that pass, latency and throughput;
**write** the passing variants with the tokenizer and ``reports/onnx.json`` together; **log** the
figures into the training run; **print** the table. A variant that fails is not shipped and the
stage says which threshold it missed and by how much; when none passes the stage fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import atomic_outputs, write_json
from imdb_mlops.common.labels import LABELS
from imdb_mlops.common.numbers import numeric_metrics
from imdb_mlops.config import Params
from imdb_mlops.modeling.classifier import load_trained_classifier
from imdb_mlops.modeling.onnx_variants import (
    build_variants,
    execution_provider,
    latency,
    make_session,
    onnx_logits,
    parity_failures,
    parity_figures,
    torch_logits,
)
from imdb_mlops.registry.tracking import reopen_run

console = Console(stderr=True)


def export(
    params: Params,
    model_dir: Path,
    tokenized_dir: Path,
    out_dir: Path,
    report_path: Path,
    run_file: Path | None = None,
) -> dict[str, Any]:
    """Run the stage: write the passing variants to ``out_dir`` and the report; with ``run_file``
    (``reports/train_run.json``), log the parity and latency figures into the training run."""
    from datasets import load_from_disk

    cfg = params.export
    provider = execution_provider()
    validation = load_from_disk(str(tokenized_dir))["validation"]
    sample = validation.select(range(min(cfg.parity_samples, len(validation))))
    ids, labels = sample["input_ids"], np.asarray(sample["label"])

    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        work = Path(tmp)
        # Eager attention exports as plain MatMul/Softmax, which the ORT optimizer fuses; SDPA does not.
        model, tokenizer = load_trained_classifier(model_dir, attn_implementation="eager")
        reference_logits = torch_logits(model, tokenizer, ids)
        candidates = build_variants(model, work, cfg.opset, gpu=provider == "CUDAExecutionProvider")
        report: dict[str, Any] = {"provider": provider, "parity_samples": len(ids), "variants": {}}
        shipped = []
        for name, path in candidates.items():
            session = make_session(path, provider)
            logits = onnx_logits(session, tokenizer, ids)
            parity = parity_figures(reference_logits, logits, labels)
            failures = parity_failures(name, parity, cfg)
            entry = {"size_mb": round(path.stat().st_size / 2**20, 2), **parity, "shipped": not failures}
            if failures:
                entry["failed"] = failures
                console.print(f"[bold red]{name} not shipped:[/] {'; '.join(failures)}")
            else:
                entry.update(latency(session, tokenizer, ids[: cfg.latency_samples]))
                shipped.append(name)
            report["variants"][name] = entry
        if not shipped:
            reasons = "; ".join(f"{n}: {', '.join(v['failed'])}" for n, v in report["variants"].items())
            raise PipelineError(f"export: no ONNX variant passed the parity gate ({reasons})")
        report["shipped"] = shipped
        with atomic_outputs(out_dir, report_path, owner="export") as (tmp_out, tmp_report):
            tmp_out.mkdir()
            for name in shipped:
                shutil.copy2(candidates[name], tmp_out / f"model.{name}.onnx")
            tokenizer.save_pretrained(tmp_out)
            write_json(tmp_out / "export.json", {"provider": provider, "shipped": shipped, "labels": list(LABELS)})
            write_json(tmp_report, report)
    if run_file is not None:
        log_to_run(params, run_file, report, report_path)
    print_report(report)
    return report


def log_to_run(params: Params, run_file: Path, report: dict[str, Any], report_path: Path) -> None:
    import mlflow

    with reopen_run(params, run_file):
        figures: dict[str, float] = {}
        for name, variant in report["variants"].items():
            figures.update(numeric_metrics(variant, prefix=f"onnx_{name}_"))
        mlflow.log_metrics(figures)
        mlflow.set_tags({"onnx.provider": report["provider"], "onnx.shipped": ",".join(report["shipped"])})
        mlflow.log_artifact(str(report_path), "export")


def print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"ONNX variants ({report['provider']}, {report['parity_samples']} validation reviews)")
    for column in ("variant", "shipped", "size MB", "max |diff|", "agreement", "accuracy", "b1 ms", "b32 texts/s"):
        table.add_column(column, justify="left" if column in ("variant", "shipped") else "right")
    for name, v in report["variants"].items():
        table.add_row(
            name,
            "yes" if v["shipped"] else "[red]no[/]",
            f"{v['size_mb']:.1f}",
            f"{v['max_abs_diff']:.1e}",
            f"{v['agreement']:.2%}",
            f"{v['accuracy']:.2%}",
            str(v.get("batch1_latency_ms_p50", "-")),
            str(v.get("batch32_texts_per_s", "-")),
        )
    console.print(table)
