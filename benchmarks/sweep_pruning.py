"""A sweep on real reviews with the packaged MiniLM: what pruning saves, and what the search finds.

In one script, on one project (a git clone of this repository beside ``../shared/imdb``):
1. the default params of the quick sweep profile, as one DVC experiment up to ``evaluate``;
2. ``imdb-mlops sweep --offline --profile sweep-quick`` with the median pruner;
3. the same sweep with pruning off.
Both sweeps draw their values with the same seeded random sampler, so they try the same
params and differ only in pruning: the wall-time ratio is what pruning bought.

    python benchmarks/sweep_pruning.py --project ../sweep-bench [--trials 8] [--seed 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_scale import cpu_flags


def sh(command: list[str], project: Path) -> float:
    """Run ``command`` in ``project`` (output to this terminal); its wall seconds."""
    print("$ " + " ".join(command), flush=True)
    began = time.perf_counter()
    subprocess.run(command, cwd=project, check=True)
    return round(time.perf_counter() - began, 1)


def study_summary(project: Path, study_name: str) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from imdb_mlops.orchestration.sweep import EVAL_METRICS, experiment_ref, git_head, read_from_ref

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(project / ".sweeps" / f"{study_name}.journal")))
    study = optuna.load_study(study_name=study_name, storage=storage)
    best = study.best_trial
    ref = experiment_ref(git_head(project), best.user_attrs["dvc_experiment"])
    return {
        "trials": {state: sum(t.state.name == state for t in study.trials) for state in ("COMPLETE", "PRUNED", "FAIL")},
        "best_trial": best.number,
        "best_params": best.params,
        "best_validation_accuracy": best.value,
        "best_test_accuracy": read_from_ref(project, ref, EVAL_METRICS).get("accuracy"),
        "trial_seconds": [
            round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
            for t in study.trials
            if t.datetime_complete and t.datetime_start
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    project = args.project.resolve()
    from imdb_mlops.orchestration.experiments import exp_run_command, experiment_overrides
    from imdb_mlops.orchestration.sweep import EVAL_METRICS, experiment_ref, git_head, read_from_ref

    results: dict = {"cpu_flags": cpu_flags(), "trials": args.trials, "seed": args.seed}
    print(f"CPU flags: {results['cpu_flags']}", flush=True)
    overrides = experiment_overrides(project / "params.yaml", ["sweep-quick"], [], True, "../shared/imdb")
    trial_overrides = {k: v for k, v in overrides.items() if not k.startswith("sweep.")}
    seconds = sh(exp_run_command(trial_overrides, "sweep-bench-default", temp=True, targets=("evaluate",)), project)
    ref = experiment_ref(git_head(project), "sweep-bench-default")
    results["default"] = {
        "seconds": seconds,
        "validation_accuracy": read_from_ref(project, ref, "reports/train_metrics.json")["validation"]["accuracy"],
        "test_accuracy": read_from_ref(project, ref, EVAL_METRICS)["accuracy"],
    }
    common = ["imdb-mlops", "sweep", "--offline", "--profile", "sweep-quick", "--trials", str(args.trials),
              "-S", "sweep.sampler=random", "-S", f"sweep.seed={args.seed}"]  # fmt: skip
    for label, extra in (("pruned", []), ("not_pruned", ["-S", "sweep.pruner.kind=none"])):
        study = f"bench-{label}-{int(time.time())}"
        seconds = sh([*common, "--study", study, *extra], project)
        results[label] = {"study": study, "seconds": seconds, **study_summary(project, study)}
        print(json.dumps({label: results[label]}), flush=True)
    results["pruning_time_ratio"] = round(results["pruned"]["seconds"] / results["not_pruned"]["seconds"], 3)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
