"""Batch scoring as its input grows: peak memory and reviews/s of ``imdb-mlops score`` (Ray Data,
one parquet part per piece) at each input size, and 1 vs 2 scoring actors on the same input.

    python benchmarks/scoring_scale.py [--sizes 10000 1000000] [--workers 1 2] [--workers-size 20000]

A tiny project is built once with ``dvc repro`` (tiny DistilBERT from a config, the offline MiniLM
tokenizer, synthetic training reviews), so the figures are about the scoring machinery, not the
model: a real model is slower per review but needs no more memory as the input grows. Inputs are
real IMDB reviews (``../shared/imdb``, all 100,000 of them, repeated to the size asked) written as
parquet shards of at most 125,000 rows with row groups of ``--rows-per-part`` rows (the pieces are
the same size whatever the input size); synthetic reviews where the dataset is absent.
Memory is the peak, sampled every 0.2 s, of the whole process tree (the command and its Ray
processes): the sum of their PSS (shared pages counted once) and the command's own RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers build the tiny project
SHARED_IMDB = REPO.parent / "shared" / "imdb" / "plain_text"

from helpers import (  # noqa: E402
    TINY_PIPELINE_PARAMS,
    make_project_copy,
    make_reviews,
    save_tiny_distilbert,
    set_params,
    write_hub_layout,
)


def cpu_flags() -> str:
    from imdb_mlops.modeling.capabilities import capability_tags, detect

    return capability_tags(detect())["cpu.flags"]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def memory_kb(pid: int, field: str) -> int:
    path = f"/proc/{pid}/smaps_rollup" if field == "Pss:" else f"/proc/{pid}/status"
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(command: list[str], cwd: Path) -> dict[str, float]:
    """Run ``command``; its seconds and the peak PSS of its tree / RSS of itself (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {"tree_pss_mb": 0.0, "command_rss_mb": 0.0}

    def sample() -> None:
        while proc.poll() is None:
            pss = sum(memory_kb(pid, "Pss:") for pid in tree(proc.pid)) / 1024
            peaks["tree_pss_mb"] = max(peaks["tree_pss_mb"], pss)
            peaks["command_rss_mb"] = max(peaks["command_rss_mb"], memory_kb(proc.pid, "VmRSS:") / 1024)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"seconds": round(time.perf_counter() - start, 1), **{k: round(v) for k, v in peaks.items()}}


def write_input(folder: Path, size: int, rows_per_part: int) -> None:
    """``size`` reviews as parquet shards of at most 125,000 (at least 2 shards), row groups of
    ``rows_per_part``: every input size is scored in pieces of the same size, by every actor."""
    import pandas as pd

    if SHARED_IMDB.is_dir():
        pool = pd.concat([pd.read_parquet(p, columns=["text"]) for p in sorted(SHARED_IMDB.glob("*.parquet"))])
    else:
        pool = make_reviews(20_000, seed=3)[["text"]]
    texts = pool["text"].tolist()
    folder.mkdir(parents=True)
    shards = max(2, -(-size // 125_000))
    per_shard = -(-size // shards)
    for shard in range(shards):
        rows = range(shard * per_shard, min(size, (shard + 1) * per_shard))
        frame = pd.DataFrame({"text": [texts[i % len(texts)] for i in rows]})
        frame.to_parquet(folder / f"part-{shard:05d}.parquet", row_group_size=rows_per_part)
        del frame


def build_project(tmp: Path) -> Path:
    from imdb_mlops.modeling.pretrained import packaged_minilm_path

    model = save_tiny_distilbert(tmp / "tiny", packaged_minilm_path(), classifier_labels=2)
    source = write_hub_layout(tmp / "imdb", 320, 160)
    (tmp / "build").mkdir()
    project = make_project_copy(tmp / "build")
    set_params(project, **TINY_PIPELINE_PARAMS, **{"data.source": str(source), "model.name": str(model)})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["git", "commit", "-qam", "tiny"], cwd=project, check=True)
    built = subprocess.run(["dvc", "repro", "register"], cwd=project, env=env, capture_output=True, text=True)
    if built.returncode != 0:
        raise SystemExit(f"dvc repro register failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")
    return project


def score_command(project: Path, data: Path, out: Path, workers: int | None, rows_per_part: int) -> list[str]:
    set_params(project, **{"scoring.workers": workers, "scoring.rows_per_part": rows_per_part})
    return [sys.executable, "-m", "imdb_mlops", "score", str(data), "--out", str(out)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers-size", type=int, default=20_000, help="input size of the 1 vs 2 actor runs")
    parser.add_argument("--rows-per-part", type=int, default=2500)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    results: dict = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
    }
    print(f"CPU flags: {results['cpu_flags']}; {results['cores']} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        project = build_project(tmp)
        results["by_size"] = []
        for size in args.sizes:
            write_input(tmp / f"in-{size}", size, args.rows_per_part)
            command = score_command(project, tmp / f"in-{size}", tmp / f"out-{size}", None, args.rows_per_part)
            figures = run_measured(command, project)
            row = {"reviews": size, **figures, "reviews_per_s": round(size / figures["seconds"])}
            results["by_size"].append(row)
            print(json.dumps(row), flush=True)
        write_input(tmp / "in-workers", args.workers_size, args.rows_per_part)
        results["by_workers"] = []
        for workers in args.workers:
            out = tmp / f"out-w{workers}"
            figures = run_measured(
                score_command(project, tmp / "in-workers", out, workers, args.rows_per_part), project
            )
            row = {"workers": workers, "reviews": args.workers_size, **figures}
            row["reviews_per_s"] = round(args.workers_size / figures["seconds"])
            results["by_workers"].append(row)
            print(json.dumps(row), flush=True)
    sizes = results["by_size"]
    if len(sizes) >= 2:
        results["tree_pss_ratio_largest_to_smallest"] = round(sizes[-1]["tree_pss_mb"] / sizes[0]["tree_pss_mb"], 3)
        results["command_rss_ratio_largest_to_smallest"] = round(
            sizes[-1]["command_rss_mb"] / sizes[0]["command_rss_mb"], 3
        )
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
