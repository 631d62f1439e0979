"""Start-up of the read commands: ``imdb-mlops registry history --json`` (and ``--help``) on a
SQLite registry, median of ``--repeats`` calls, beside the same read through MLflow's client (what
the command did before it read the store directly), timed in the same run.

    python benchmarks/read_commands.py [--project PATH] [--repeats 5] [--moves 20] [--out FILE]

``--project``: a project whose ``mlflow.db`` holds the registry (e.g. the offline quick run's);
without it a registry is built in a temporary folder: three versions and ``--moves`` promotions.
Goal: ``registry history --json`` <= 1.5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import sqlite_registry  # noqa: E402

MODEL = "imdb-sentiment"
MLFLOW_PATH = """
from imdb_mlops.config import load_params
from imdb_mlops.registry.history import history_entries
from imdb_mlops.registry.versions import connect
import json
print(json.dumps([e.model_dump() for e in history_entries(connect(load_params().tracking), "imdb-sentiment")]))
"""


def median_seconds(command: list[str], cwd: Path, env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--project", type=Path, help="use this project's registry (its mlflow.db)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from imdb_mlops.modeling.capabilities import capability_tags, detect
    from imdb_mlops.registry.aliases import promote

    flags = capability_tags(detect())["cpu.flags"]
    print(f"CPU: {platform.processor() or platform.machine()}; flags {flags}; {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="read-commands-") as tmp:
        root = Path(tmp)
        os.environ["IMDB_MLOPS_LOCK_DIR"] = str(root / "locks")
        if args.project:
            root, uri = args.project.resolve(), f"sqlite:///{(args.project / 'mlflow.db').resolve()}"
        else:
            client = sqlite_registry(root, MODEL)
            for number in range(3):
                (root / f"v{number}").mkdir()
                client.create_model_version(MODEL, source=str(root / f"v{number}"))
            for move in range(args.moves):
                promote(client, MODEL, str(move % 3 + 1), reason=f"move {move}")
            (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
            uri = client.tracking_uri
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        cli = [sys.executable, "-m", "imdb_mlops"]
        results = {
            "cpu_flags": flags,
            "registry": "the project's" if args.project else f"built: 3 versions, {args.moves} moves",
            "repeats": args.repeats,
            "help_s": median_seconds([*cli, "--help"], root, env, args.repeats),
            "history_json_s": median_seconds([*cli, "registry", "history", "--json"], root, env, args.repeats),
            "history_through_mlflow_client_s": median_seconds(
                [sys.executable, "-c", MLFLOW_PATH], root, env, args.repeats
            ),
        }
    results["speedup"] = round(results["history_through_mlflow_client_s"] / results["history_json_s"], 2)
    for key in ("help_s", "history_json_s", "history_through_mlflow_client_s"):
        results[key] = round(results[key], 3)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
