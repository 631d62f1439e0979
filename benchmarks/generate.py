"""Batched generation vs one prompt at a time: new tokens per second, same prompts, same tokens.

    python benchmarks/generate.py [--model models/generator] [--prompts 32] [--new-tokens 64]
                                  [--batch-sizes 1 8 32] [--device cpu|cuda] [--out FILE]

Both runs go through the generate stage's own decoding code (:func:`imdb_mlops.modeling.textgen.generate_texts`:
control code + prompt, left padding, KV cache, sampling with the stage's defaults), on the same
prompts (the params' prompts with both control codes, in turn). Every row is made to produce
exactly ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``: no early end-of-text),
so each configuration generates the same total. Without ``--model``: a GPT-2 small-sized model
(12 layers, width 768, 50,257 + 3 tokens) with random weights (speed does not depend on the
weights) and a byte-level BPE tokenizer learned from the real reviews (``--imdb``) or synthetic ones.
Ratios are against batch size 1 in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def build_model(imdb: Path, vocab_size: int) -> tuple[object, object, str]:
    import pandas as pd
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    files = sorted(imdb.rglob("train-*.parquet"))
    texts = (
        pd.read_parquet(files[0], columns=["text"])["text"].head(5000).tolist()
        if files
        else ["the film was fine"] * 100
    )
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False)
    eos = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config), tokenizer, "GPT-2 small shape (124M parameters, random weights)"


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imdb_mlops.config import DecodingConfig, load_params
    from imdb_mlops.modeling.textgen import SENTIMENTS, add_control_codes, generate_texts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a causal-LM folder (e.g. models/generator)")
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if args.model:
        model = AutoModelForCausalLM.from_pretrained(str(args.model))
        tokenizer = AutoTokenizer.from_pretrained(str(args.model))
        what = str(args.model)
    else:
        model, tokenizer, what = build_model(args.imdb, 8000)
    add_control_codes(model, tokenizer)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    model.to(args.device, dtype=dtype).eval()
    model.generation_config.min_new_tokens = args.new_tokens  # every row generates exactly --new-tokens

    prompts = load_params(REPO / "params.yaml").generation.prompts
    requests = [(SENTIMENTS[i % 2], prompts[i % len(prompts)]) for i in range(args.prompts)]
    results = []
    for batch in args.batch_sizes:
        decoding = DecodingConfig(max_new_tokens=args.new_tokens, batch_size=batch, seed=1, guidance_scale=1.0)
        generate_texts(model, tokenizer, requests[: max(batch, 2)], decoding)  # warm-up: kernels, allocator
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _, tokens = generate_texts(model, tokenizer, requests, decoding)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results.append({"batch_size": batch, "new_tokens": tokens, "seconds": round(seconds, 3),
                        "tokens_per_s": round(tokens / seconds, 1)})  # fmt: skip
        print(
            f"batch {batch:>3}: {tokens} new tokens in {seconds:.2f} s = {tokens / seconds:,.1f} tokens/s", flush=True
        )
    base = results[0]["tokens_per_s"]
    for row in results:
        row["vs_batch_1"] = round(row["tokens_per_s"] / base, 2)
    summary = {
        "model": what,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "prompts": args.prompts,
        "new_tokens_per_prompt": args.new_tokens,
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
