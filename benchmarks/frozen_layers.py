"""Classifier training step time with the bottom of the encoder frozen (``train.frozen_layers``).

    python benchmarks/frozen_layers.py [--imdb ../shared/imdb] [--frozen none 0 2 3] [--rounds 4]

The offline MiniLM-L6 checkpoint with a fresh classification head, the quick profile's batches (16
real training reviews cut to 128 tokens, dynamic padding), fp32, AdamW: one model per setting, all in
this process, timed in interleaved rounds (every setting once per round) so a noisy neighbour hits
them alike. Reported: median seconds per optimizer step and the ratio to training every weight.
The CPU's flags are printed first. Accuracy is not measured here (one step says nothing about it):
see ``benchmarks/README.md`` for the quick runs that measured it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--frozen", nargs="+", default=["none", "0", "2", "3"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="steps per setting per round")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import pandas as pd
    import torch
    from transformers import AutoTokenizer

    from imdb_mlops.modeling.capabilities import capability_tags
    from imdb_mlops.modeling.classifier import freeze_bottom, load_pretrained_classifier
    from imdb_mlops.modeling.pretrained import packaged_minilm_path

    caps = capability_tags()
    print(
        "CPU:",
        caps["cpu.model"],
        "| flags:",
        caps["cpu.flags"],
        "| PyTorch kernels:",
        torch.backends.cpu.get_cpu_capability(),
    )
    source = str(packaged_minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(source)
    reviews = pd.read_parquet(next((args.imdb / "plain_text").glob("train-*.parquet"))).sample(
        16 * args.steps, random_state=0
    )
    batches = [
        {
            **tokenizer(list(chunk.text), truncation=True, max_length=128, padding=True, return_tensors="pt"),
            "labels": torch.tensor(list(chunk.label)),
        }
        for chunk in (reviews.iloc[i : i + 16] for i in range(0, len(reviews), 16))
    ]
    setups = {}
    for name in args.frozen:
        torch.manual_seed(0)
        model = load_pretrained_classifier(source, "minilm", len(tokenizer), attention_dropout=0.0).train()
        trainable = freeze_bottom(model, None if name == "none" else int(name))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        setups[name] = {"model": model, "optimizer": optimizer, "trainable": trainable, "seconds": []}
    for round_index in range(args.rounds + 1):  # round 0 warms up and is not counted
        for setup in setups.values():
            for batch in batches:
                began = time.perf_counter()
                setup["model"](**batch).loss.backward()
                setup["optimizer"].step()
                setup["optimizer"].zero_grad()
                if round_index:
                    setup["seconds"].append(time.perf_counter() - began)
    baseline = statistics.median(setups[args.frozen[0]]["seconds"])
    rows = []
    for name, setup in setups.items():
        median = statistics.median(setup["seconds"])
        rows.append(
            {
                "frozen_layers": name,
                "trainable_parameters": setup["trainable"],
                "seconds_per_step": round(median, 3),
                "vs_first": round(median / baseline, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"capabilities": caps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
