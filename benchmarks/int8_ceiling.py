"""How fast int8 could make the classifier on this CPU at best: the share of plain PyTorch fp32's
time spent in the linear layers, ONNX Runtime's int8 GEMM rate against its fp32 one at the model's
shapes, and the speed-up those two allow (Amdahl) if every other op cost nothing extra.

    python benchmarks/int8_ceiling.py --model-dir models/classifier [--keep-fp32 head ffn_output.0 ...]
        [--batch 32] [--tokens 128] [--out FILE]

1. PyTorch fp32 (as `benchmarks/serving.py` runs it: inference mode, 2 threads): the best time of
   a forward pass over ``--batch`` x ``--tokens`` token ids, before and after step 2.
2. GEMM rates at the encoder's three shapes (rows = batch x tokens; Q/K/V/output: hidden x hidden,
   FFN in: hidden x intermediate, FFN out: intermediate x hidden): PyTorch's ``nn.functional.linear``
   fp32, and one-node ONNX graphs in ONNX Runtime (2 threads), ``MatMul`` fp32 and
   ``MatMulInteger`` (uint8 activations x 7-bit int8 weights, what the shipped int8 variant runs).
   ``f`` = the time PyTorch's linear layers take at those rates over the forward pass's time.
3. The ceiling: the linear layers ``--keep-fp32`` leaves in fp32 (the quick profile's list by
   default) keep PyTorch's time, the others take ONNX Runtime's int8 time, and nothing else changes:
   ``1 / ((1 - f) + f * linear time with int8 / linear time in fp32)``. Quantizing activations,
   dequantizing results, ONNX Runtime's attention and the served model's tokenization only lower the
   real figure.

The CPU's flags are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def quick_keep_fp32() -> list[str]:
    """The quick profile's ``export.int8_keep_fp32`` on an AVX2-only CPU (what its int8 variant ships with)."""
    from imdb_mlops.config.overrides import profile_overrides

    return profile_overrides(REPO, ["cpu-quick"], kind="cpu-avx2")["export.int8_keep_fp32"]


def forward_seconds(model, batch: int, tokens: int, repeats: int = 5) -> float:
    """Best time of one fp32 forward pass over ``batch`` x ``tokens`` token ids (inference mode)."""
    import torch

    ids = torch.randint(1000, model.config.vocab_size, (batch, tokens))
    mask = torch.ones_like(ids)
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            best = min(best, time.perf_counter() - start)
    return best


def onnx_gemm(rows: int, inner: int, cols: int, integer: bool):
    """A one-node ONNX Runtime session: (rows x inner) @ (inner x cols), and its feeds."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        weight = rng.integers(-63, 64, (inner, cols), dtype=np.int8)  # 7-bit weights, as shipped on AVX2
        node = helper.make_node("MatMulInteger", ["x", "w", "zx"], ["y"])
        inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, [rows, inner])]
        inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array(128, np.uint8), "zx")]
        output = helper.make_tensor_value_info("y", TensorProto.INT32, [rows, cols])
        feed = {"x": rng.integers(0, 256, (rows, inner), dtype=np.uint8)}
    else:
        weight = rng.standard_normal((inner, cols), dtype=np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inner])]
        inits = [numpy_helper.from_array(weight, "w")]
        output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])
        feed = {"x": rng.standard_normal((rows, inner), dtype=np.float32)}
    graph = helper.make_graph([node], "gemm", inputs, [output], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, feed


def macs_per_second(run, macs: int, repeats: int = 20) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return macs / best


def gemm_rates(rows: int, hidden: int, intermediate: int) -> dict[str, dict[str, float]]:
    """Multiply-adds per second (billions) at the encoder's three GEMM shapes."""
    import torch

    rates = {}
    for inner, cols in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden)):
        macs = rows * inner * cols
        shape = f"{rows}x{inner}x{cols}"
        row = {}
        for name, integer in (("onnx_fp32", False), ("onnx_int8", True)):
            session, feed = onnx_gemm(rows, inner, cols, integer)
            row[name] = macs_per_second(lambda s=session, f=feed: s.run(None, f), macs) / 1e9
        x, w, b = torch.randn(rows, inner), torch.randn(cols, inner), torch.randn(cols)
        with torch.inference_mode():  # what nn.Linear runs
            row["torch_fp32"] = macs_per_second(lambda x=x, w=w, b=b: torch.nn.functional.linear(x, w, b), macs) / 1e9
        rates[shape] = {k: round(v, 1) for k, v in row.items()}
    return rates


def main() -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from imdb_mlops.modeling.capabilities import capability_tags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--keep-fp32", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.keep_fp32 = quick_keep_fp32() if args.keep_fp32 is None else args.keep_fp32
    unknown = [n for n in args.keep_fp32 if n != "head" and not n.startswith(("ffn_input.", "ffn_output."))]
    if unknown:  # whole layers or attention kept in fp32 are not modelled here
        raise SystemExit(f"--keep-fp32: {', '.join(unknown)}: only head, ffn_input.N and ffn_output.N are modelled")
    tags = capability_tags()
    print(f"CPU: {tags['cpu.model']} | flags: {tags['cpu.flags']} | threads: {torch.get_num_threads()}", flush=True)

    model = AutoModelForSequenceClassification.from_pretrained(str(args.model_dir)).eval()
    cfg = model.config
    layers, hidden, inner = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    seconds = forward_seconds(model, args.batch, args.tokens)
    rates = gemm_rates(args.batch * args.tokens, hidden, inner)
    seconds = min(seconds, forward_seconds(model, args.batch, args.tokens))  # before and after: the host drifts
    # the encoder's linear layers by GEMM shape: multiply-adds per token, and how many of them the list keeps
    # in fp32 (ffn_input.N is hidden -> intermediate, ffn_output.N the way back; the head is negligible)
    shapes = dict(zip(rates, ("attention", "ffn_input", "ffn_output"), strict=True))
    macs = {
        "attention": 4 * layers * hidden * hidden,
        "ffn_input": layers * hidden * inner,
        "ffn_output": layers * hidden * inner,
    }

    def kept_share(shape: str, keep: list[str]) -> float:
        return sum(1 for name in keep if name.startswith(f"{shape}.")) / layers

    def linear_time_ratio(keep: list[str], int8_rate: str) -> float:
        """Time of the linear layers with int8 where the list allows, over PyTorch fp32's time for them."""
        torch_time = sum(macs[n] / rates[s]["torch_fp32"] for s, n in shapes.items())
        mixed = sum(
            macs[n] * (kept_share(n, keep) / rates[s]["torch_fp32"] + (1 - kept_share(n, keep)) / rates[s][int8_rate])
            for s, n in shapes.items()
        )
        return mixed / torch_time

    def ceiling(keep: list[str]) -> float:
        return 1 / ((1 - f) + f * linear_time_ratio(keep, "onnx_int8"))

    kept = sum(macs[n] * kept_share(n, args.keep_fp32) for n in macs) / sum(macs.values())
    rows = args.batch * args.tokens
    linear_seconds = sum(rows * macs[n] / (rates[s]["torch_fp32"] * 1e9) for s, n in shapes.items())
    f = min(1.0, linear_seconds / seconds)
    texts_per_s = args.batch / seconds
    gflops = 2 * sum(macs.values()) * args.tokens * texts_per_s / 1e9
    print("GEMM, billion multiply-adds per second (2 threads):")
    for shape, row in rates.items():
        print(f"  {shapes[shape]} {shape}: PyTorch fp32 {row['torch_fp32']}, ONNX fp32 {row['onnx_fp32']}, "
              f"ONNX int8 {row['onnx_int8']} ({row['onnx_int8'] / row['onnx_fp32']:.2f}x ONNX fp32, "
              f"{row['onnx_int8'] / row['torch_fp32']:.2f}x PyTorch fp32)")  # fmt: skip
    result = {
        "cpu": tags,
        "keep_fp32": args.keep_fp32,
        "pytorch_fp32_texts_per_s": round(texts_per_s, 1),
        "pytorch_fp32_linear_gflops": round(gflops, 1),
        "linear_share": round(f, 3),
        "gemm_billion_macs_per_s": rates,
        "linear_int8_speedup_over_pytorch_all": round(1 / linear_time_ratio([], "onnx_int8"), 2),
        "kept_fp32_share_of_linear_macs": round(kept, 3),
        "ceiling_with_keep_list": round(ceiling(args.keep_fp32), 2),
        "ceiling_all_int8": round(ceiling([]), 2),
    }
    print(f"PyTorch fp32: {texts_per_s:.1f} texts/s at {args.batch} x {args.tokens} tokens "
          f"({gflops:.0f} GFLOP/s in the linear layers); linear layers {f:.0%} of its time")  # fmt: skip
    print(f"int8 linear layers over PyTorch fp32's: {result['linear_int8_speedup_over_pytorch_all']}x; "
          f"the list keeps {kept:.0%} of their multiply-adds in fp32")  # fmt: skip
    print(f"ceiling over PyTorch fp32 (nothing but the linear layers changes): with the list "
          f"{result['ceiling_with_keep_list']}x, all int8 {result['ceiling_all_int8']}x")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
