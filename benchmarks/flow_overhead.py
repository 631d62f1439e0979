"""Overhead of the Prefect flows over the work they orchestrate.

    python benchmarks/flow_overhead.py [--repeats 3] [--score-reviews 1000]

Training flow vs ``dvc repro`` on the same work, in two fresh git + DVC copies of the repository
with the same tiny params (tiny DistilBERT from a config, the offline MiniLM tokenizer, synthetic
reviews): a full build of all stages, then ``--repeats`` no-op runs (everything up to date).
Scoring flow vs calling the champion pyfunc directly on the same reviews (reviews/s). All in this
one script; Prefect runs against a temporary local API started once (its start-up is reported
apart from the per-run figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the tests' helpers build the tiny project
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from helpers import (  # noqa: E402 - after the environment above
    TINY_PIPELINE_PARAMS,
    make_project_copy,
    make_reviews,
    save_tiny_distilbert,
    set_params,
    write_hub_layout,
)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dvc_repro(project: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["dvc", "repro"], cwd=project, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--score-reviews", type=int, default=1000)
    args = parser.parse_args()

    import pandas as pd
    from prefect.testing.utilities import prefect_test_harness

    from imdb_mlops.config import load_params
    from imdb_mlops.modeling.pretrained import packaged_minilm_path as offline_model_path
    from imdb_mlops.registry.predict import predict_chunked
    from imdb_mlops.registry.versions import connect, load_pyfunc

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = save_tiny_distilbert(tmp / "tiny", offline_model_path(), classifier_labels=2)
        source = write_hub_layout(tmp / "imdb", 320, 160)
        projects = {}
        for name in ("dvc", "flow"):
            (tmp / name).mkdir()
            project = make_project_copy(tmp / name)
            set_params(project, **TINY_PIPELINE_PARAMS, **{"data.source": str(source), "model.name": str(model)})
            subprocess.run(["git", "commit", "-qam", "tiny"], cwd=project, check=True)
            projects[name] = project

        started = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=120):
            api_start_s = time.perf_counter() - started
            from pipelines.scoring_flow import scoring_flow
            from pipelines.training_flow import training_flow

            full = {
                "dvc_repro_s": timed(lambda: dvc_repro(projects["dvc"])),
                "training_flow_s": timed(lambda: training_flow(project_dir=str(projects["flow"]))),
            }
            noop = {
                "dvc_repro_s": [timed(lambda: dvc_repro(projects["dvc"])) for _ in range(args.repeats)],
                "training_flow_s": [
                    timed(lambda: training_flow(project_dir=str(projects["flow"]))) for _ in range(args.repeats)
                ],
            }

            project = projects["flow"]
            reviews = make_reviews(args.score_reviews, seed=11, prefix="new ")
            (tmp / "incoming").mkdir()
            reviews[["text"]].to_parquet(tmp / "incoming" / "new.parquet")
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            params = load_params(project / "params.yaml")
            connect(params.tracking, project)

            def direct() -> None:
                pyfunc = load_pyfunc(f"models:/{params.registry.model_name}@champion")
                predict_chunked(
                    pyfunc,
                    reviews["text"].tolist(),
                    params.registry.max_texts_per_request,
                    params.registry.max_text_chars,
                )

            direct()  # warm-up: imports, model download from the store
            direct_s = statistics.median(timed(direct) for _ in range(args.repeats))
            flow_s = statistics.median(
                timed(
                    lambda i=i: scoring_flow(
                        input_path=str(tmp / "incoming"), out_dir=str(tmp / f"out{i}"), project_dir=str(project)
                    )
                )
                for i in range(args.repeats)
            )
            scored = len(pd.read_parquet(tmp / "out0" / "predictions.parquet"))

    median_noop = {k: statistics.median(v) for k, v in noop.items()}
    result = {
        "prefect_api_start_s": round(api_start_s, 2),
        "full_tiny_run": {k: round(v, 2) for k, v in full.items()}
        | {"flow_over_dvc": round(full["training_flow_s"] / full["dvc_repro_s"], 3)},
        "noop_run_median": {k: round(v, 2) for k, v in median_noop.items()}
        | {"flow_over_dvc": round(median_noop["training_flow_s"] / median_noop["dvc_repro_s"], 3)},
        "scoring": {
            "reviews": scored,
            "pyfunc_direct_reviews_per_s": round(args.score_reviews / direct_s, 1),
            "scoring_flow_reviews_per_s": round(args.score_reviews / flow_s, 1),
            "flow_over_direct_time": round(flow_s / direct_s, 3),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
