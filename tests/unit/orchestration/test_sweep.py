"""The sweep's claims against its study: values drawn from the space, the study's budget kept over
every job, a failed trial replaced, a space bound checked against the params it names."""

import subprocess
import threading
from pathlib import Path

import optuna
import pytest

from helpers import REPO_ROOT
from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config import SearchDimension, SweepConfig
from imdb_mlops.orchestration.sweep import Sweep, check_space, first_varying_stage, make_study, suggest


def git_repo(folder: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    (folder / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    subprocess.run(["git", "add", "params.yaml"], cwd=folder, check=True)
    subprocess.run(["git", "-c", "user.email=t@l", "-c", "user.name=t", "commit", "-qm", "p"], cwd=folder, check=True)
    return folder


SPACE = {
    "train.learning_rate": SearchDimension(type="log_float", low=1e-5, high=1e-3),
    "train.epochs": SearchDimension(type="float", low=1.0, high=3.0, step=0.5),
    "train.per_device_train_batch_size": SearchDimension(type="int", low=8, high=32, step=8),
    "train.lr_scheduler_type": SearchDimension(type="categorical", choices=["linear", "cosine"]),
}


def test_each_value_is_drawn_from_its_dimension():
    study = optuna.create_study()
    for _ in range(20):
        values = suggest(study.ask(), SweepConfig(space=SPACE))
        assert 1e-5 <= values["train.learning_rate"] <= 1e-3
        assert values["train.epochs"] in (1.0, 1.5, 2.0, 2.5, 3.0)
        assert values["train.per_device_train_batch_size"] in (8, 16, 24, 32)
        assert values["train.lr_scheduler_type"] in ("linear", "cosine")


def test_the_study_never_holds_more_live_trials_than_its_budget_and_a_failed_one_is_replaced(tmp_path):
    project = git_repo(tmp_path)
    cfg = SweepConfig(trials=3, space=SPACE, storage=f"journal:{tmp_path / 's.journal'}")
    spec = f"journal:{tmp_path / 's.journal'}"
    sweeps = [Sweep(cfg, "s", project, {}, "parent", make_study(cfg, "s", spec), spec) for _ in range(2)]
    claimed: list = []

    def claimer(sweep: Sweep) -> None:
        while (got := sweep.claim()) is not None:
            claimed.append(got[0].number)

    threads = [threading.Thread(target=claimer, args=(s,)) for s in sweeps for _ in range(2)]  # 2 "machines" x 2 jobs
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [0, 1, 2]

    sweeps[0].tell(optuna.trial.Trial(sweeps[0].study, 1), "failed")  # trial 1's dvc exp run failed
    replacement = sweeps[1].claim()
    assert replacement is not None and replacement[0].number == 3
    assert replacement[0].user_attrs["dvc_experiment"] == "s-t003"
    assert sweeps[1].claim() is None


def test_a_bound_that_is_not_a_valid_value_of_its_param_is_refused_before_any_trial(tmp_path):
    project = git_repo(tmp_path)
    cfg = SweepConfig(space={"train.learning_rate": SearchDimension(type="float", low=1e-5, high=1.5)})
    with pytest.raises(ParamsError, match=r"sweep.space.train.learning_rate: 1.5 is not a valid value: must be < 1"):
        check_space(cfg, project, {})
    check_space(SweepConfig(space=SPACE), project, {})


@pytest.mark.parametrize(
    ("keys", "target", "expected"),
    [
        (["train.learning_rate"], "evaluate", (["ingest", "tokenize"], "train")),
        (["train.learning_rate", "train.epochs"], "train", (["ingest", "tokenize"], "train")),
        (["tokenize.max_length"], "train", (["ingest"], "tokenize")),
        (["model.name"], "evaluate", (["ingest"], "tokenize")),  # tokenize reads model.name too
        (["data.max_samples.train"], "evaluate", ([], None)),  # ingest varies: nothing is shared
        (["seed"], "train", ([], None)),
        (["generation.decoding.temperature"], "evaluate", ([], None)),  # reaches no stage up to evaluate
    ],
)
def test_parallel_trials_wait_only_for_the_stages_no_swept_param_reaches(keys, target, expected):
    assert first_varying_stage(REPO_ROOT, target, keys) == expected


def test_without_a_dvc_pipeline_nothing_is_waited_for(tmp_path):
    assert first_varying_stage(git_repo(tmp_path), "train", ["train.learning_rate"]) == ([], None)
