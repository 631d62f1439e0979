"""Inference throughput: PyTorch as users run it by default vs the exported ONNX variants.

    python benchmarks/inference.py --model-dir models/classifier [--imdb ../shared/imdb] [--n 256]

PyTorch: ``AutoModelForSequenceClassification`` in eval mode with its default (SDPA) attention,
``torch.inference_mode``. ONNX: the export stage's own code builds fp32 (optimized) and int8
variants in a temporary folder, run by ONNX Runtime's CPU provider. Same N real test reviews
(tokenized to 256 tokens), same thread count (torch and ORT both use all cores), batch 1 and 32;
accuracy of each beside its texts/s. Ratios are against PyTorch in the same script run.

    python benchmarks/inference.py --device cuda ...

On a GPU: PyTorch fp32 (SDPA, the default), bf16 and fp16 (weights cast, SDPA) vs ONNX Runtime's
CUDA provider running the export stage's fp32 and fp16 variants; ratios against PyTorch fp32 and
against PyTorch's best half-precision figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def timed(fn, ids: list[list[int]], batch: int, full_warmup: bool) -> tuple[float, np.ndarray]:
    # On a GPU, cuBLAS/ORT pick kernels per input shape on first sight: warm up on every batch.
    for i in range(0, len(ids) if full_warmup else 1, batch):
        fn(ids[i : i + batch])
    start = time.perf_counter()
    logits = np.concatenate([fn(ids[i : i + batch]) for i in range(0, len(ids), batch)])
    return len(ids) / (time.perf_counter() - start), logits


def main() -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from imdb_mlops.modeling.onnx_variants import build_variants, make_session, onnx_logits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "classifier")
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--sort-by-length", action="store_true", help="batch reviews of similar length together")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()
    if not (args.model_dir / "config.json").exists():
        sys.exit(f"{args.model_dir}: no trained model; run `imdb-mlops exp-run --offline --profile cpu-quick` first")

    test = pd.read_parquet(next(args.imdb.rglob("test-*.parquet")), columns=["text", "label"])
    test = test.sample(n=args.n, random_state=0)
    tokenizer = AutoTokenizer.from_pretrained(str(args.model_dir))
    ids = tokenizer(test["text"].tolist(), truncation=True, max_length=args.max_length)["input_ids"]
    labels = test["label"].to_numpy()
    if args.sort_by_length:  # batches of similar length pad less, for every variant alike
        order = np.argsort([len(x) for x in ids], kind="stable")
        ids, labels = [ids[i] for i in order], labels[order]

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no GPU")

    def torch_runner(dtype: torch.dtype):
        model = AutoModelForSequenceClassification.from_pretrained(str(args.model_dir), dtype=dtype).eval()
        model.to(args.device)

        def run(chunk: list[list[int]]) -> np.ndarray:
            batch = tokenizer.pad({"input_ids": chunk}, return_tensors="pt").to(args.device)
            with torch.inference_mode():
                return model(**batch).logits.float().cpu().numpy()

        return run

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        eager = AutoModelForSequenceClassification.from_pretrained(
            str(args.model_dir), attn_implementation="eager"
        ).eval()
        variants = build_variants(eager, Path(tmp), opset=17, gpu=gpu)
        runners = {"pytorch": torch_runner(torch.float32)}
        if gpu:
            runners["pytorch_bf16"] = torch_runner(torch.bfloat16)
            runners["pytorch_fp16"] = torch_runner(torch.float16)
            variants.pop("int8", None)  # a CPU variant
        provider = "CUDAExecutionProvider" if gpu else "CPUExecutionProvider"
        for name, path in variants.items():
            session = make_session(path, provider)
            if provider not in session.get_providers():
                sys.exit(f"ONNX Runtime did not take {provider} (got {session.get_providers()})")
            runners[f"onnx_{name}"] = lambda chunk, s=session: onnx_logits(s, tokenizer, chunk, len(chunk))
        for name, fn in runners.items():
            row = {}
            for batch in (1, 32):
                rate, logits = timed(fn, ids, batch, full_warmup=gpu)
                row[f"batch{batch}_texts_per_s"] = round(rate, 2)
            row["accuracy"] = round(float((logits.argmax(1) == labels).mean()), 4)
            results[name] = row
            print(
                f"{name:<11} b1 {row['batch1_texts_per_s']:7.2f}/s  b32 {row['batch32_texts_per_s']:7.2f}/s  acc {row['accuracy']:.4f}",
                file=sys.stderr,
            )
    base = results["pytorch"]
    summary = {
        "device": torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} cores)",
        "reviews": args.n,
        "max_length": args.max_length,
        "sorted_by_length": args.sort_by_length,
        "threads": {"torch": torch.get_num_threads(), "cpu_cores": os.cpu_count()},
        "results": results,
        "speedup_vs_pytorch": {
            name: {f"batch{b}": round(r[f"batch{b}_texts_per_s"] / base[f"batch{b}_texts_per_s"], 2) for b in (1, 32)}
            for name, r in results.items()
            if name != "pytorch"
        },
    }
    if gpu:
        best_half = {
            b: max(results[n][f"batch{b}_texts_per_s"] for n in ("pytorch_bf16", "pytorch_fp16")) for b in (1, 32)
        }
        summary["onnx_fp16_vs_best_pytorch_half"] = (
            {f"batch{b}": round(results["onnx_fp16"][f"batch{b}_texts_per_s"] / best_half[b], 2) for b in (1, 32)}
            if "onnx_fp16" in results
            else None
        )
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
