"""``imdb-mlops webhooks ...``: the receiver of MLflow registry events, and registering it on the
tracking server. The secret both share is ``$IMDB_MLOPS_WEBHOOK_SECRET``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from imdb_mlops.cli.app import webhooks_app
from imdb_mlops.cli.common import DEFAULT_PARAMS_PATH, ModelNameOption, ParamsOption, handles_errors
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import load_params

SECRET_ENV = "IMDB_MLOPS_WEBHOOK_SECRET"
DEFAULT_WEBHOOK = "imdb-mlops-champion"


def _secret() -> str:
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise PipelineError(
            f"{SECRET_ENV} is not set: the webhook's secret, which signs every delivery "
            f"(e.g. export {SECRET_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))'))"
        )
    return secret


@webhooks_app.command("serve")
@handles_errors
def webhooks_serve(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes it beyond this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
) -> None:
    """Receive registry events: champion moves made in the MLflow UI join the history (for
    rollback) and become a Prefect event that triggers re-scoring."""
    from imdb_mlops.registry.champion_events import ChampionEvents
    from imdb_mlops.registry.versions import connect
    from imdb_mlops.serving.webhook_receiver import serve_receiver

    secret = _secret()
    loaded = load_params(params)
    client = connect(loaded.tracking)
    serve_receiver(ChampionEvents(client, name or loaded.registry.model_name), secret, host, port)


@webhooks_app.command("register")
@handles_errors
def webhooks_register(
    url: Annotated[str, typer.Option(help="Where the receiver listens.")] = "http://127.0.0.1:8765/mlflow-webhook",
    allow_remote: Annotated[
        bool, typer.Option(help="Accept a URL that is not loopback (a receiver started with --host).")
    ] = False,
    webhook_name: Annotated[str, typer.Option(help="Name of the webhook on the server.")] = DEFAULT_WEBHOOK,
    test: Annotated[bool, typer.Option(help="Send MLflow's test delivery after registering.")] = True,
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    name: ModelNameOption = None,
) -> None:
    """Register (or update) the webhook on the MLflow tracking server (MLFLOW_TRACKING_URI)."""
    from imdb_mlops.registry.versions import connect
    from imdb_mlops.registry.webhooks import check_webhook_url, register_webhook

    check_webhook_url(url, allow_remote)
    secret = _secret()
    loaded = load_params(params)
    client = connect(loaded.tracking)
    if not str(client.tracking_uri).startswith(("http://", "https://")):
        raise PipelineError(
            f"{client.tracking_uri}: webhooks are sent by a tracking server, not by a store this command opens "
            "itself; start `mlflow server --backend-store-uri sqlite:///mlflow.db` and set "
            "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (README, 'Promotion events')"
        )
    model = name or loaded.registry.model_name
    hook, created = register_webhook(client, webhook_name, url, secret, model)
    typer.echo(f"webhook {hook.name} ({hook.webhook_id}) {'created' if created else 'updated'}: {url}")
    if test:
        result = client.test_webhook(hook.webhook_id)
        if not result.success:
            raise PipelineError(
                f"webhook {hook.name}: the server's test delivery to {url} failed "
                f"({result.error_message or result.response_status} {result.response_body or ''}); is the receiver running, and was the "
                "server started with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and "
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true for a loopback http URL?"
            )
        typer.echo(f"test delivery answered {result.response_status}")
