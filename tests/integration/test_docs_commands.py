"""The documentation's checked command blocks (a ``<!-- checked -->`` line before a ```bash block)
run on the project the Prefect training flow built (tiny model, real DVC, MLflow and registry):
each command exits 0, so the docs cannot drift from the code."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from helpers import REPO_ROOT, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]
MARKER = "<!-- checked -->"


def checked_commands(page: Path) -> list[str]:
    """The commands of ``page``'s checked blocks, one per line, comments removed."""
    lines = page.read_text(encoding="utf-8").splitlines()
    commands = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert lines[index + 1].strip() == "```bash", f"{page.name}:{index + 2}: {MARKER} must precede a ```bash block"
        for body in lines[index + 2 :]:
            if body.strip() == "```":
                break
            words = shlex.split(body, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


PAGES = sorted((REPO_ROOT / "docs").glob("*.md"))
COMMANDS = [(page.name, command) for page in PAGES for command in checked_commands(page)]


def test_the_docs_have_checked_blocks_that_cover_the_read_commands():
    commands = [command for _, command in COMMANDS]
    assert len(commands) >= 8
    for needed in ("imdb-mlops registry history", "imdb-mlops predict", "imdb-mlops check-params", "dvc status"):
        assert any(command.startswith(needed) for command in commands), needed


@pytest.mark.parametrize(("page", "command"), COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_a_checked_command_runs_on_the_tiny_pipeline(flow_project, page, command):
    project, _ = flow_project
    proc = run(["bash", "-c", command], project, check=False, MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    assert proc.returncode == 0, f"{page}: `{command}` exited {proc.returncode}:\n{proc.stderr[-2000:]}"
