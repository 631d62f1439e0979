"""The study's pictures and its table of best trials."""

import io

import optuna
from rich.console import Console

from imdb_mlops.sweeps.report import best_trials_table, study_figures


def finished_study() -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="demo")
    for value in (0.7, 0.9, 0.8):
        trial = study.ask()
        trial.suggest_float("train.learning_rate", 1e-5, 1e-2, log=True)
        study.tell(trial, value)
    pruned = study.ask()
    pruned.suggest_float("train.learning_rate", 1e-5, 1e-2, log=True)
    pruned.report(0.55, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return study


def test_the_table_ranks_finished_trials_best_first_and_counts_states():
    console = Console(file=io.StringIO(), width=200)
    console.print(best_trials_table(finished_study(), "accuracy"))
    text = console.file.getvalue()
    assert "3 completed, 1 pruned, 0 failed" in " ".join(text.split())
    rows = [line for line in text.splitlines() if "completed" in line and "│" in line]
    assert [r.split("│")[2].strip() for r in rows] == ["0.9000", "0.8000", "0.7000"]
    assert "pruned" in text and "0.5500" in text


def test_the_pictures_are_written_as_png(tmp_path):
    written = study_figures(finished_study(), tmp_path)
    assert {"optimization_history.png", "parallel_coordinate.png"} <= set(written)
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in written)
