"""Commands that use trained models: write reviews with the registered generator, explain and
check attention, predict, score batches, serve over HTTP."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from imdb_mlops.cli.app import app
from imdb_mlops.cli.common import (
    DEFAULT_PARAMS_PATH,
    ModelRefOption,
    ParamsOption,
    err,
    handles_errors,
    plain,
    wide_console,
)
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import load_params


@app.command("write-reviews", rich_help_panel="Using models")
@handles_errors
def write_reviews(
    sentiment: Annotated[str, typer.Option("--sentiment", "-s", help="positive or negative.")],
    prompt: Annotated[str, typer.Option("--prompt", help="How the review starts (may be empty).")] = "",
    num: Annotated[int, typer.Option("--num", "-n", min=1, max=64, help="Reviews to generate.")] = 3,
    model: ModelRefOption = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default: generation.decoding.max_new_tokens.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (> 0).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass, in (0, 1].")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Greedy decoding instead of sampling.")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same reviews).")] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Write reviews with the registered generator, e.g. imdb-mlops write-reviews -s positive --prompt "This movie"."""
    from imdb_mlops.registry.predict import generate_reviews, require_sentiment
    from imdb_mlops.registry.versions import connect, resolve_model_uri

    require_sentiment(sentiment)
    loaded = load_params(params)
    connect(loaded.tracking)
    uri = resolve_model_uri(model, loaded.generation.registered_model)
    overrides = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    request_params = {k: v for k, v in overrides.items() if v is not None}
    if greedy:
        request_params["strategy"] = "greedy"
    rows = generate_reviews(uri, prompt, sentiment, num, request_params)
    if as_json:
        for row in rows.to_dict("records"):
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    out = Console()
    colour = "green" if sentiment == "positive" else "red"
    for index, text in enumerate(rows["text"], start=1):
        out.print(
            Panel(text.strip() or "(empty)", title=f"[{colour}]{sentiment}[/] review {index}/{num}", subtitle=uri)
        )


@app.command("generate", hidden=True)
@functools.wraps(write_reviews)
def generate_alias(*args: Any, **kwargs: Any) -> None:
    """Old name of write-reviews (kept for one release)."""
    err.print(
        "[yellow]note:[/] `imdb-mlops generate` is now `imdb-mlops write-reviews`; the old name goes in the next release"
    )
    write_reviews(*args, **kwargs)


@app.command(rich_help_panel="Using models")
@handles_errors
def explain(
    text: Annotated[str, typer.Argument(help="The review to explain.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="A checkpoint folder, or champion (default) / @alias / version of the registry."
        ),
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
    from imdb_mlops.modeling.explain import explain as run
    from imdb_mlops.registry.versions import resolve_checkpoint

    loaded = load_params(params)
    with tempfile.TemporaryDirectory(prefix="explain-") as tmp:
        model_dir, source = resolve_checkpoint(loaded.registry, loaded.tracking, model, Path(tmp))
        report = run(model_dir, text, loaded.tokenize, out, layer, head, per_head, top)
    report["model"] = source
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    console = wide_console()
    colour = "green" if report["label"] == "positive" else "red"
    console.print(f"[bold {colour}]{report['label']}[/] ({report['probability']:.3f})  model {source}", highlight=False)
    if report["truncation"]:
        console.print(f"[yellow]note:[/] {report['truncation']}", highlight=False)
    heads = {report["head"]: report["cls_top"]} if not per_head else report["cls_top_per_head"]
    for h, rows in heads.items():
        which = "mean of all heads" if h is None else f"head {h}"
        console.print(
            f"[CLS] attends to (layer {report['layer']} of 0-{report['layers'] - 1}, {which}):",
            highlight=False,
            markup=False,
        )
        table = Table()
        for column in ("position", "token", "weight"):
            table.add_column(column, justify="left" if column == "token" else "right")
        for row in rows:
            table.add_row(str(row["position"]), row["token"], f"{row['weight']:.3f}")
        console.print(table)
    if report.get("figures"):
        console.print(
            f"{len(report['figures'])} heatmaps in {out}/ (layer<L>.png{', layer<L>_head<H>.png' if per_head or head is not None else ''})"
        )


@app.command("attention-check", rich_help_panel="Using models")
@handles_errors
def attention_check(
    text: Annotated[str, typer.Argument(help="A review to run through the model.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="A classifier or generator checkpoint folder.")] = Path(
        "models/classifier"
    ),
) -> None:
    """Recompute every layer's attention from its own Q/K/V weights (imdb_mlops.modeling.attention) and compare with the model."""
    from imdb_mlops.modeling.attention import WEIGHT_TOLERANCE, check_checkpoint

    rows = check_checkpoint(model, text)
    out = wide_console()
    out.print(
        f"Reference attention vs {model} ({rows[0]['kind']}, {'causal' if rows[0]['causal'] else 'bidirectional'}):",
        highlight=False,
    )
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


@app.command(rich_help_panel="Using models")
@handles_errors
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Review texts.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A text file, one review per line ('-' = stdin).")
    ] = None,
    model: ModelRefOption = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show which variant the model runs here, and why.")
    ] = False,
) -> None:
    """Predict sentiment with a registered model, e.g. imdb-mlops predict "a delight" -m @challenger."""
    from imdb_mlops.registry.predict import predict_texts
    from imdb_mlops.registry.versions import connect, resolve_model_uri

    items = list(texts or [])
    if file is not None:
        source = "stdin" if str(file) == "-" else str(file)
        try:
            raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
            content = raw.decode("utf-8")
        except OSError as exc:
            raise PipelineError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise PipelineError(f"{source}: not UTF-8 text (byte {exc.start}, line {line}: {exc.reason})") from None
        items += [line for line in content.splitlines() if line.strip()]
    if not items:
        raise PipelineError("predict: no texts (give them as arguments or with --file)")
    empty = [number for number, text in enumerate(items, start=1) if not text.strip()]
    if empty:
        raise PipelineError(f"predict: text {empty[0]} is empty; a review needs words to be classified")
    loaded = load_params(params)
    connect(loaded.tracking)
    uri = resolve_model_uri(model, loaded.registry.model_name)
    frame, choice = predict_texts(uri, items, loaded.registry.max_texts_per_request)
    rows = frame.to_dict("records")
    if verbose:
        print_choice(choice)
    if as_json:
        for text, row in zip(items, rows, strict=True):
            typer.echo(json.dumps({"text": text, **{k: plain(v) for k, v in row.items()}}))
        return
    table = Table(title=uri)
    for column in ("text", "label", "probability"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for text, row in zip(items, rows, strict=True):
        short = text if len(text) <= 70 else text[:67] + "..."
        colour = "green" if row["label"] == "positive" else "red"
        table.add_row(short, f"[{colour}]{row['label']}[/]", f"{row['probability']:.3f}")
    Console().print(table)


@app.command(rich_help_panel="Using models")
@handles_errors
def score(
    input_path: Annotated[Path, typer.Argument(help="A file or folder of new reviews (parquet, CSV, JSONL, .txt).")],
    out: Annotated[Path, typer.Option(help="Folder for predictions.parquet/ (parts) and drift.json.")] = Path(
        "scores/latest"
    ),
    model: ModelRefOption = None,
    raw: Annotated[Path, typer.Option(help="Ingested splits (training reviews: the drift reference).")] = Path(
        "data/raw"
    ),
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to run on (host:port or ray://...); default: RAY_ADDRESS, else this machine."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Score new reviews with a registered model on Ray Data and report drift against the training
    data. Parts are written as they are scored; a rerun scores only what is missing."""
    loaded = load_params(params)  # refused params fail before the stage's imports
    from imdb_mlops.stages.score import score as run

    run(loaded, input_path, out, model, raw, ray_address=ray_address)


@app.command(rich_help_panel="Using models")
@handles_errors
def serve(
    model: ModelRefOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless told otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5001,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: serving.workers, else per CPU as memory allows).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="Compute threads per worker (default: serving.threads_per_worker, else cores / workers)."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Serve a registered model over HTTP on 127.0.0.1: MLflow's scoring app (the API of `mlflow
    models serve`) in supervised uvicorn workers, with admission control (503 + Retry-After when
    busy, 413 for oversized bodies; limits in serving.*)."""
    from imdb_mlops.modeling.runtimes import cpu_threads
    from imdb_mlops.registry.tracking import tracking_uri
    from imdb_mlops.registry.versions import connect, resolve_model_uri, version_of_uri
    from imdb_mlops.registry.webhooks import is_loopback
    from imdb_mlops.serving.server import (
        SETTINGS_ENV,
        available_memory,
        prepare_shared_dir,
        serve_settings,
        threads_per_worker,
        uvicorn_command,
        worker_count,
        worker_env,
    )

    loaded = load_params(params)
    client = connect(loaded.tracking)
    uri = resolve_model_uri(model, loaded.registry.model_name)
    version_of_uri(client, uri, loaded.registry.model_name)  # `-m 99`: one line naming what exists
    count = worker_count(workers or loaded.serving.workers, cpu_threads(), available_memory())
    threads = threads_per_worker(threads or loaded.serving.threads_per_worker, cpu_threads(), count)
    command = uvicorn_command(host, port, count)
    err.print(
        f"Serving {uri} with {count} worker(s) of {threads} thread(s) on http://{host}:{port}\n$ {shlex.join(command)}",
        highlight=False,
    )
    if not is_loopback(f"http://{host}"):
        err.print(
            f"[yellow]warning:[/] listening on {host}: the model is reachable from other machines", highlight=False
        )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri(),
        # the pid survives the exec: the folder is named after the supervisor its workers share
        SETTINGS_ENV: serve_settings(uri, tracking_uri(), loaded.serving, prepare_shared_dir(os.getpid())),
        **worker_env(threads),
    }
    sys.stderr.flush()
    os.execve(command[0], command, env)  # the server is this process: a signal to it reaches the supervisor


def print_choice(choice: dict[str, Any] | None) -> None:
    """The served model's variant choice as a table (on stderr: stdout keeps the predictions)."""
    console = Console(stderr=True)
    if not choice:
        console.print("This model version does not choose a variant at load (registered before issue 15).")
        return
    probe = choice.get("probe", {})
    table = Table(
        title=f"Variant: {choice['variant']} on {choice['device']} ({choice['rule']})",
        caption=f"probe: {probe.get('batch', '-')} x {probe.get('tokens', '-')} tokens, {probe.get('seconds', '-')} s; "
        f"CPU flags: {choice.get('cpu_flags', '-')}",
    )
    table.add_column("variant")
    table.add_column("texts/s on the probe", justify="right")
    for variant, speed in choice.get("texts_per_s", {}).items():
        mark = " (chosen)" if variant == choice["variant"] else ""
        table.add_row(variant + mark, f"{speed:.1f}")
    console.print(table)
