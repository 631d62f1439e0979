"""``imdb-mlops``: the command line. Each command is a thin caller of a function elsewhere.

Commands by group: :mod:`~imdb_mlops.cli.stages` (one per DVC stage), :mod:`~imdb_mlops.cli.registry`
(``imdb-mlops registry ...``), :mod:`~imdb_mlops.cli.models` (write-reviews, explain, attention-check,
predict, score, serve), :mod:`~imdb_mlops.cli.experiments` (exp-run, check-params, minilm-path,
reproduce), :mod:`~imdb_mlops.cli.webhooks` (``imdb-mlops webhooks serve|register``).
Expected failures (bad params, bad data, unreachable hub) print one line, ``error: ...``, and exit
non-zero; they never print a traceback.
"""

from imdb_mlops.cli import experiments, models, registry, stages, webhooks  # noqa: F401 - they add their commands
from imdb_mlops.cli.app import app
from imdb_mlops.common.exiting import exit_without_teardown
from imdb_mlops.common.processes import die_with_parent

die_with_parent()  # worker processes a command forks (datasets.map) die with it, even on kill -9

__all__ = ["app", "main"]


def main() -> None:
    """The console script ``imdb-mlops`` and ``python -m imdb_mlops``: the command, then the exit
    without the interpreter's teardown (:mod:`imdb_mlops.common.exiting`)."""
    try:
        app()
    except SystemExit as done:
        exit_without_teardown(done.code)
    exit_without_teardown(0)
