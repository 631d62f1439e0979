"""What every command shares: one-line errors, the params option, tables that keep their columns."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import DISK_FULL
from imdb_mlops.config import DEFAULT_PARAMS_PATH

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
ModelRefOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="champion (default), @alias, a version number, or a models:/ URI."),
]
ModelNameOption = Annotated[str | None, typer.Option("--name", help="Registered model (default: registry.model_name).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
__all__ = [
    "DEFAULT_PARAMS_PATH",
    "JsonOption",
    "ModelNameOption",
    "ModelRefOption",
    "ParamsOption",
    "err",
    "handles_errors",
]


def handles_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted:[/] stopped; outputs are as they were or complete", highlight=False)
            raise typer.Exit(130) from None
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {where}no space left on the device", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as exc:
            from imdb_mlops.registry.tracking import tracking_outage

            line = tracking_outage(exc)
            if line is None:
                raise
            err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def wide_console() -> Console:
    """Tables keep their columns when piped (rich would assume 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def utc(timestamp_ms: int | None) -> str:
    from datetime import datetime

    if not timestamp_ms:
        return "-"
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def fmt(value: str | None) -> str:
    try:
        return f"{float(value):.4f}" if value is not None else "-"
    except ValueError:
        return value or "-"


def plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
