"""Wall time of a no-op ``dvc repro`` (every stage up to date).

    python benchmarks/dvc_noop.py [--imdb ../shared/imdb] [--train 2000] [--repeats 5]

Copies the repository's tracked files into a temporary git + DVC checkout, runs the pipeline once
on a subsample of the real reviews with the offline MiniLM tokenizer, then times ``dvc repro``
again ``--repeats`` times (goal: under 3 s). Prints the first build's time beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from imdb_mlops.modeling.pretrained import packaged_minilm_path as offline_model_path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imdb", type=Path, default=REPO.parent / "shared" / "imdb")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        for name in tracked.split():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, project / name)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["data"]["source"] = str(args.imdb.resolve())
        params["data"]["max_samples"] = {"train": args.train, "validation": args.train // 4, "test": args.train}
        params["model"]["name"] = str(offline_model_path())
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=b", "-c", "user.email=b@l", "commit", "-qm", "b"],
        ):
            sh(cmd, project)
        first = sh(["dvc", "repro"], project)
        noop = [sh(["dvc", "repro"], project) for _ in range(args.repeats)]
    result = {
        "first_build_s": round(first, 2),
        "noop_repro_median_s": round(statistics.median(noop), 2),
        "noop_repro_max_s": round(max(noop), 2),
        "goal_s": 3.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
