"""The stage commands: each a thin caller of one stage function (``dvc.yaml`` runs these)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from imdb_mlops.cli.app import app
from imdb_mlops.cli.common import DEFAULT_PARAMS_PATH, ParamsOption, err, handles_errors
from imdb_mlops.config import load_params

F = TypeVar("F", bound=Callable[..., Any])


def restores_outputs_on_failure(func: F) -> F:
    """Under ``dvc repro`` (``DVC_STAGE`` set), a failing stage puts back the outputs DVC deleted
    before running it, from DVC's cache (:mod:`imdb_mlops.orchestration.restore`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            stage = os.environ.get("DVC_STAGE")
            if stage and getattr(exc, "exit_code", 1) != 0:
                from imdb_mlops.orchestration.restore import restore_stage_outputs

                root = Path.cwd()  # the stage's wdir: dvc.yaml's folder (DVC_ROOT may be the parent
                # repo of a `dvc exp run --temp` executor, whose workspace must not be touched)
                restored, missing = restore_stage_outputs(stage.rsplit(":", 1)[-1], root)
                if restored:
                    err.print(f"kept the previous outputs (back from DVC's cache): {', '.join(restored)}")
                if missing:
                    err.print(f"[yellow]not in DVC's cache, so not restored:[/] {', '.join(missing)}")
            raise

    return wrapper  # type: ignore[return-value]


@app.command(rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
def ingest(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    out: Annotated[Path, typer.Option(help="Folder for the split parquet files.")] = Path("data/raw"),
    report: Annotated[Path, typer.Option(help="DVC metrics file.")] = Path("reports/data.json"),
) -> None:
    """Read data.source, validate and split it into data/raw/{train,validation,test}.parquet."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.ingest import ingest as run

    run(loaded, out, report)


@app.command(rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
def tokenize(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    raw: Annotated[Path, typer.Option(help="Ingested splits.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the Arrow datasets.")] = Path("data/tokenized"),
    report: Annotated[Path, typer.Option(help="DVC metrics file.")] = Path("reports/tokenize.json"),
) -> None:
    """Tokenize the ingested splits with model.name's fast tokenizer (no padding)."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.tokenize import tokenize as run

    run(loaded, raw, out, report)


@app.command(rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
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
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.train import train as run

    run(loaded, tokenized, raw, model_dir, reports)


@app.command(rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
def evaluate(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    model_dir: Annotated[Path, typer.Option("--model-dir", help="The trained model.")] = Path("models/classifier"),
    tokenized: Annotated[Path, typer.Option(help="Tokenized datasets.")] = Path("data/tokenized"),
    raw: Annotated[Path, typer.Option(help="Ingested splits (review texts for the mistakes file).")] = Path("data/raw"),
    reports: Annotated[Path, typer.Option(help="Folder for metrics, plots, figures and mistakes.")] = Path("reports"),
) -> None:
    """Score the trained model on the test split; write DVC metrics and plots; log to MLflow."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.evaluate import evaluate as run

    run(loaded, model_dir, tokenized, raw, reports)


@app.command("export", rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
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
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.export import export as run

    run(loaded, model_dir, tokenized, out, report, run_file)


@app.command("register", rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
def register_model(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    onnx_dir: Annotated[Path, typer.Option("--onnx-dir", help="Shipped ONNX variants and tokenizer.")] = Path(
        "models/onnx"
    ),
    model_dir: Annotated[Path, typer.Option("--model-dir", help="PyTorch checkpoint, logged beside.")] = Path(
        "models/classifier"
    ),
    raw: Annotated[Path, typer.Option(help="Ingested splits (test reviews for the promotion gate).")] = Path(
        "data/raw"
    ),
    run_file: Annotated[Path, typer.Option("--run-file", help="Training run file.")] = Path("reports/train_run.json"),
    metrics: Annotated[Path, typer.Option(help="Test metrics of the evaluate stage.")] = Path("reports/metrics.json"),
    onnx_report: Annotated[Path, typer.Option("--onnx-report", help="Parity report of the export stage.")] = Path(
        "reports/onnx.json"
    ),
    report: Annotated[Path, typer.Option(help="Version and gate decision.")] = Path("reports/register.json"),
    data_report: Annotated[Path, typer.Option("--data-report", help="Ingest report (the model card's data).")] = Path(
        "reports/data.json"
    ),
) -> None:
    """Register the ONNX pyfunc in the MLflow registry (alias challenger), run the behavioural checks
    and the promotion gate, and write the version's model card."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.register import register as run

    run(
        loaded,
        onnx_dir,
        model_dir,
        raw,
        run_file,
        metrics,
        onnx_report,
        report,
        data_report_path=data_report,
    )


@app.command("build-generator", rich_help_panel="Stages (dvc.yaml runs these)")
@handles_errors
@restores_outputs_on_failure
def build_generator(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    raw: Annotated[Path, typer.Option(help="Ingested splits.")] = Path("data/raw"),
    classifier: Annotated[Path, typer.Option(help="The trained classifier (scores the reviews).")] = Path(
        "models/classifier"
    ),
    out: Annotated[Path, typer.Option(help="Folder for the fine-tuned generator.")] = Path("models/generator"),
    report: Annotated[Path, typer.Option(help="DVC metrics file.")] = Path("reports/generation.json"),
    samples: Annotated[Path, typer.Option(help="Generated reviews, one JSON object per line.")] = Path(
        "reports/generated.jsonl"
    ),
    run_file: Annotated[Path, typer.Option(help="The classifier's MLflow run file (lineage).")] = Path(
        "reports/train_run.json"
    ),
) -> None:
    """The generate stage: fine-tune generation.model with control codes, generate, score, register."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.generate import generate as run

    run(loaded, raw, classifier, out, report, samples, run_file)
