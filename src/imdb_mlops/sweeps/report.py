"""The study as people read it: Optuna's pictures (optimisation history, parameter importances,
parallel coordinates) as PNG files, and a table of the best trials for the terminal."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rich.table import Table

FIGURES = {
    "optimization_history.png": "plot_optimization_history",
    "param_importances.png": "plot_param_importances",
    "parallel_coordinate.png": "plot_parallel_coordinate",
}


def study_figures(study: Any, folder: Path) -> list[str]:
    """Write the pictures the study's trials allow (importances need two finished trials);
    returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, function in FIGURES.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
                axes = getattr(optuna_plots, function)(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few finished trials for this picture
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        figure.set_size_inches(9, 5.5)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def best_trials_table(study: Any, objective: str, top: int = 5) -> Table:
    """The finished trials, best first: value, state, params, DVC experiment."""
    from optuna.trial import TrialState

    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    maximize = study.direction.name == "MAXIMIZE"

    def value_of(trial: Any) -> float:
        """A completed trial's value; a pruned one's best evaluation before it was stopped."""
        if trial.state == TrialState.COMPLETE:
            return float(trial.value)
        reported = list(trial.intermediate_values.values())
        if not reported:
            return float("-inf" if maximize else "inf")
        return float(max(reported) if maximize else min(reported))

    ranked = sorted(finished, key=value_of, reverse=maximize)[:top]
    counts = {state: sum(t.state == state for t in study.get_trials(deepcopy=False)) for state in TrialState}
    table = Table(
        title=f"study {study.study_name}: best trials by validation {objective} "
        f"({counts[TrialState.COMPLETE]} completed, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed)"
    )
    table.add_column("trial", justify="right")
    table.add_column(objective, justify="right")
    table.add_column("state")
    names = sorted({key for trial in ranked for key in trial.params})
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("DVC experiment")
    for trial in ranked:
        value = value_of(trial)
        table.add_row(
            str(trial.number),
            f"{value:.4f}",
            "completed" if trial.state == TrialState.COMPLETE else "pruned",
            *[_shown(trial.params.get(name)) for name in names],
            trial.user_attrs.get("dvc_experiment", ""),
        )
    return table


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
