"""A whole ``dvc repro -f`` with ``imdb-mlops`` leaving as it does (no interpreter teardown,
:mod:`imdb_mlops.common.exiting`) against the same commands leaving through ``sys.exit`` (what the
console script did before), alternating, in the same run.

    python benchmarks/command_exit.py --project PATH [--rounds 2] [--out FILE]

``--project``: a project whose pipeline has run once (its params point at data and models that
exist), e.g. a copy built by the tests' tiny pipeline or the offline quick run's workspace; every
stage is re-run (``-f``) in each round, so a tiny pipeline is the useful size. The baseline is a
console script on ``PATH`` that runs the same typer app and exits the ordinary way. The CPU's flags
are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

ORDINARY_EXIT = """#!{python}
import sys
from imdb_mlops.cli import app
sys.exit(app())
"""


def repro_seconds(project: Path, path: str) -> float:
    env = {**os.environ, "PATH": path, "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(["dvc", "repro", "-f"], cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro -f failed in {project}:\n{proc.stderr[-2000:]}")
    return round(time.perf_counter() - start, 1)


def main() -> None:
    from imdb_mlops.modeling.capabilities import capability_tags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tags = capability_tags()
    print(f"CPU: {tags['cpu.model']} | flags: {tags['cpu.flags']} | cores: {len(os.sched_getaffinity(0))}", flush=True)
    bin_dir = Path(sys.executable).parent
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    seconds: dict[str, list[float]] = {"sys.exit (before)": [], "without teardown": []}
    with tempfile.TemporaryDirectory() as shim:
        script = Path(shim) / "imdb-mlops"
        script.write_text(ORDINARY_EXIT.format(python=sys.executable))
        script.chmod(0o755)
        for _ in range(args.rounds):
            seconds["sys.exit (before)"].append(repro_seconds(args.project, f"{shim}{os.pathsep}{path}"))
            seconds["without teardown"].append(repro_seconds(args.project, path))
            print(seconds, flush=True)
    before, now = (min(v) for v in seconds.values())
    print(f"dvc repro -f: {before} s -> {now} s ({before / now:.2f}x)")
    if args.out:
        args.out.write_text(
            json.dumps({"cpu": tags, "seconds": seconds, "speedup": round(before / now, 2)}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
