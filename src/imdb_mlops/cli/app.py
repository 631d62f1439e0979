"""The ``imdb-mlops`` Typer applications the command modules add their commands to."""

import typer

app = typer.Typer(
    help="Reproducible IMDB sentiment pipeline: DVC stages, MLflow tracking, Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
registry_app = typer.Typer(
    help="The MLflow model registry: versions, promotion, rollback, lineage.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
webhooks_app = typer.Typer(
    help="MLflow registry webhooks: the receiver of champion moves, and registering it.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
