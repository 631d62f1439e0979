"""Tokenize stage throughput vs a bare ``tokenizer(list_of_texts)`` call on the same reviews.

    python benchmarks/tokenize_throughput.py [--imdb ../shared/imdb] [--n 25000] [--repeats 2]

Both sides use the fast tokenizer of the offline MiniLM checkpoint (the same uncased WordPiece
vocabulary as DistilBERT) on N training reviews. The stage side is ``tokenize_splits`` (batched
``datasets.map``, head+tail truncation to 512, Arrow output). Every measurement runs in a fresh
process, as the stage does under ``dvc repro``, once with the Rust tokenizer's own thread pool
(the default) and once with ``TOKENIZERS_PARALLELISM=false`` (one core per process). Best of
``--repeats`` runs; ratios are between figures of this one script run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_IMDB = Path(__file__).resolve().parents[2] / "shared" / "imdb"


def measure(mode: str, imdb: Path, n: int, repeats: int) -> float:
    """Run in a worker process: seconds for one pass of ``mode`` (best of ``repeats``)."""
    import pandas as pd
    from datasets import Dataset, DatasetDict, disable_progress_bars

    from imdb_mlops.config import Params, TokenizeConfig
    from imdb_mlops.modeling.pretrained import load_tokenizer
    from imdb_mlops.modeling.pretrained import packaged_minilm_path as offline_model_path
    from imdb_mlops.stages.tokenize import tokenize_splits

    disable_progress_bars()
    train = pd.read_parquet(next(imdb.rglob("train-*.parquet")), columns=["text", "label"])
    train = train.sample(frac=1.0, random_state=0).head(n).reset_index(drop=True)
    texts = train["text"].tolist()
    tokenizer = load_tokenizer(str(offline_model_path()), Params().hub)
    tokenizer.model_max_length = 10**9  # silence the "longer than 512" warning on the bare side
    splits = DatasetDict({"train": Dataset.from_pandas(train, preserve_index=False)})
    if mode == "bare":
        work = lambda: tokenizer(texts)  # noqa: E731
    else:
        cfg = TokenizeConfig(num_proc=int(mode.removeprefix("stage_np")))
        work = lambda: tokenize_splits(splits, tokenizer, cfg)  # noqa: E731
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def run_worker(mode: str, threads: bool, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    if not threads:
        env["TOKENIZERS_PARALLELISM"] = "false"
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--imdb",
            str(args.imdb),
            "--n",
            str(args.n),
            "--repeats",
            str(args.repeats),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=DEFAULT_IMDB)
    parser.add_argument("--n", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(measure(args.worker, args.imdb, args.n, args.repeats))
        return

    rows = [("bare", True), ("stage_np1", True), ("bare", False), ("stage_np1", False), ("stage_np2", False)]
    seconds = {}
    for mode, threads in rows:
        key = f"{mode}{'' if threads else '_1thread'}"
        seconds[key] = run_worker(mode, threads, args)
        print(f"{key:<22} {seconds[key]:6.2f} s  {args.n / seconds[key]:7.0f} reviews/s", file=sys.stderr)
    rate = {k: args.n / v for k, v in seconds.items()}
    summary = {
        "reviews": args.n,
        "cpu_cores": os.cpu_count(),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "stage_vs_bare_rust_threads": round(rate["stage_np1"] / rate["bare"], 3),
        "stage_vs_bare_one_thread": round(rate["stage_np1_1thread"] / rate["bare_1thread"], 3),
        "num_proc2_vs_one_process_one_thread": round(rate["stage_np2_1thread"] / rate["stage_np1_1thread"], 3),
        "num_proc2_vs_one_process_rust_threads": round(rate["stage_np2_1thread"] / rate["stage_np1"], 3),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
