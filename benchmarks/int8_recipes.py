"""int8 recipes under the export gate: which one stays faithful on which CPU, and what it costs.

    python benchmarks/int8_recipes.py [--model-dir models/classifier] [--tokenized data/tokenized] \
        [--n 2500] [--sensitivity-n 500] [--out benchmarks/results/int8_recipes.json]

In one process: PyTorch fp32 (eager attention, the gate's reference) on the first N validation
reviews, the fused fp32 ONNX graph, then each int8 recipe through the export stage's own code
(:func:`imdb_mlops.modeling.onnx_variants.quantize_int8`) and gate
(:func:`imdb_mlops.modeling.variant_gate.gate_figures`): accuracy change and its lower bound, the
99th percentile of |probability difference|, texts/s at batch 32 (vs ONNX fp32 in the same run).

Recipes with ``alpha`` smooth the quantized MatMuls' inputs first (SmoothQuant, as
``export.int8_smoothing``: :func:`imdb_mlops.modeling.onnx_variants.smoothed_for_int8`, ranges from
the first ``--calibration-n`` training reviews).

Then the per-MatMul sensitivity of the 7-bit recipe: each quantizable MatMul quantized *alone* (the
rest fp32) on the first ``--sensitivity-n`` reviews (256); its p99 says how much that MatMul moves the
probabilities. The recipes ``reduce_range + keep top-k`` leave the k most sensitive ones in fp32.

Why 7-bit weights (``reduce_range``): on a CPU without VNNI (AVX2 only), ONNX Runtime's u8 x s8
kernel adds pairs of products in 16 bits with saturation (``vpmaddubsw``); 8-bit weights can
overflow it, 7-bit weights cannot (2 x 255 x 64 < 32767). Without saturation, integer arithmetic is
exact, so a 7-bit model gives the same results on AVX2 as on a VNNI CPU, and its gate figures
measured on either hold on both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KEEP = ["head", "ffn_output.0", "ffn_output.1"]
QUICK_BEFORE = ["head", "ffn_output.0", "ffn_output.1", "ffn_output.2", "ffn_input.1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models/classifier")
    parser.add_argument("--tokenized", type=Path, default=REPO / "data/tokenized")
    parser.add_argument("--n", type=int, default=2500)
    parser.add_argument("--sensitivity-n", type=int, default=256, help="0: no sensitivity analysis")
    parser.add_argument("--calibration-n", type=int, default=256, help="training reviews for smoothing's ranges")
    parser.add_argument("--recipes", nargs="*", default=None, help="only recipes whose names hold one of these")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from datasets import load_from_disk

    from imdb_mlops.config import ExportConfig
    from imdb_mlops.config.overrides import profile_overrides
    from imdb_mlops.modeling.capabilities import capability_tags
    from imdb_mlops.modeling.classifier import load_trained_classifier
    from imdb_mlops.modeling.onnx_variants import export_fused, quantizable_matmuls, quantize_int8, smoothed_for_int8
    from imdb_mlops.modeling.runtimes import onnx_runner, predict_logits, torch_runner
    from imdb_mlops.modeling.variant_gate import GateRule, gate_failures, gate_figures, positive_probabilities

    caps = capability_tags()
    print("CPU:", caps["cpu.model"], "| flags:", caps["cpu.flags"], flush=True)
    validation = load_from_disk(str(args.tokenized))["validation"]
    sample = validation.select(range(min(args.n, len(validation))))
    calibration = load_from_disk(str(args.tokenized))["train"].select(range(args.calibration_n))["input_ids"]
    ids, labels = sample["input_ids"], np.asarray(sample["label"])
    model, tokenizer = load_trained_classifier(args.model_dir, attn_implementation="eager")
    pad = int(tokenizer.pad_token_id or 0)
    rule = GateRule()
    reference = predict_logits(torch_runner(model, "torch_fp32", "cpu"), ids, 32, pad)
    ref_p = positive_probabilities(reference)

    def measure(path: Path, subset: int | None = None) -> dict:
        runner = onnx_runner(path, "int8", gpu=False)
        n = subset or len(ids)
        began = time.perf_counter()
        logits = predict_logits(runner, ids[:n], 32, pad)
        seconds = time.perf_counter() - began
        figures = gate_figures(ref_p[:n], positive_probabilities(logits), labels[:n], rule)
        return {
            **figures.as_dict(),
            "texts_per_s": round(n / seconds, 1),
            "ships": not gate_failures(figures, rule),
        }

    results: dict = {"capabilities": caps, "n": len(ids), "recipes": {}, "sensitivity": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = ExportConfig()
        _, fp32 = export_fused(model, work, cfg.opset, gpu=False)
        results["recipes"]["onnx_fp32"] = measure(fp32)
        print("onnx fp32", results["recipes"]["onnx_fp32"], flush=True)
        quick = profile_overrides(REPO, ["cpu-quick"], kind="cpu-avx2")  # what the quick run ships on AVX2
        quick_keep, quick_alpha = quick["export.int8_keep_fp32"], quick["export.int8_smoothing"]
        recipes = {  # name: (weight bits, keep in fp32, u8 weights, smoothing alpha)
            "8-bit weights, head fp32 (the recipe before)": (8, ["head"], False, None),
            "7-bit weights (reduce_range), head fp32": (7, ["head"], False, None),
            "8-bit u8 weights, head fp32": (8, ["head"], True, None),
            "7-bit, head + FFN outputs of layers 0-1 fp32 (default)": (7, DEFAULT_KEEP, False, None),
            "8-bit, head + FFN outputs of layers 0-1 fp32": (8, DEFAULT_KEEP, False, None),
            "7-bit, head + 4 sensitive FFN MatMuls fp32 (quick profile before)": (7, QUICK_BEFORE, False, None),
            "7-bit, smoothed (alpha 0.8), head fp32": (7, ["head"], False, 0.8),
            f"7-bit, smoothed (alpha {quick_alpha}), {' + '.join(quick_keep)} fp32 (quick profile)": (
                7,
                quick_keep,
                False,
                quick_alpha,
            ),
            "7-bit, smoothed (alpha 0.8), head + FFN outputs of layers 0-1 fp32": (7, DEFAULT_KEEP, False, 0.8),
        }
        for name, (bits, keep, unsigned, alpha) in recipes.items():
            if args.recipes and not any(word in name for word in args.recipes):
                continue
            path, source = work / "int8.onnx", fp32
            if alpha is not None:
                smoothing = ExportConfig(int8_smoothing=alpha, int8_keep_fp32=keep)
                source = smoothed_for_int8(model, fp32, work / "smoothed.onnx", smoothing, (calibration, pad))
            quantize_int8(source, path, keep, bits == 7, unsigned=unsigned)
            results["recipes"][name] = measure(path)
            print(name, results["recipes"][name], flush=True)
        if not args.sensitivity_n:
            return finish(args, results)
        # per-MatMul sensitivity of the 7-bit recipe: quantize one at a time
        matmuls = quantizable_matmuls(fp32, ["head"])
        for node in matmuls:
            path = work / "one.onnx"
            quantize_int8(fp32, path, ["head"], True, only=[node])
            figures = measure(path, args.sensitivity_n)
            results["sensitivity"][node] = figures["probability_diff_p99"]
            print(f"  {node}: p99 {figures['probability_diff_p99']:.4f}", flush=True)
        ranked = sorted(results["sensitivity"], key=results["sensitivity"].get, reverse=True)
        results["ranked"] = ranked
        for k in (2, 4):
            path = work / "topk.onnx"
            quantize_int8(fp32, path, ["head"], True, exclude=ranked[:k])
            name = f"s8 reduce_range, head + top-{k} sensitive MatMuls fp32"
            results["recipes"][name] = measure(path)
            print(name, results["recipes"][name], flush=True)
    finish(args, results)


def finish(args: argparse.Namespace, results: dict) -> None:
    base = results["recipes"]["onnx_fp32"]["texts_per_s"]
    for entry in results["recipes"].values():
        entry["speed_vs_onnx_fp32"] = round(entry["texts_per_s"] / base, 2)
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
