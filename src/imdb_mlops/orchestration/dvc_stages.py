"""What the Prefect training flow needs from DVC, without Prefect: the stage order (read from
``dvc.yaml`` through DVC's own graph), what ``dvc status`` finds changed, one stage reproduced with
``dvc repro --single-item``, per-stage retries and timeouts, and the MLflow run's flow tags.
Param overrides are :mod:`imdb_mlops.config.overrides`; the report is :mod:`imdb_mlops.orchestration.summary`.

The flow (``pipelines/training_flow.py``) is a thin layer of Prefect tasks over these functions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imdb_mlops.common.dvc_yaml import read_stages
from imdb_mlops.common.errors import ParamsError, PipelineError
from imdb_mlops.common.files import read_json
from imdb_mlops.common.processes import tools_first_env
from imdb_mlops.config import Params

SKIPPED = "didn't change, skipping"


class StageFailed(PipelineError):
    """A DVC stage exited non-zero; the message is the stage's own error line."""


@dataclass
class StageResult:
    stage: str
    ran: bool
    seconds: float


def stage_graph(project_dir: Path) -> tuple[list[str], dict[str, set[str]]]:
    """Stage names of ``dvc.yaml`` in dependency order, and each stage's ancestors, from DVC's own
    graph (read once)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = [stage.name for stage in reversed(list(nx.topological_sort(graph)))]
        ancestors = {stage.name: {s.name for s in nx.descendants(graph, stage)} for stage in graph.nodes}
    return order, ancestors


def stage_order(project_dir: Path) -> list[str]:
    return stage_graph(project_dir)[0]


def upstream(project_dir: Path) -> dict[str, set[str]]:
    return stage_graph(project_dir)[1]


def stages_reached(project_dir: Path, keys: list[str], ancestors: dict[str, set[str]]) -> set[str]:
    """The stages whose params (``dvc.yaml``, dotted keys of ``params.yaml``) cover one of ``keys``,
    and every stage downstream of them (``ancestors``: :func:`stage_graph`'s): what changing those
    params makes ``dvc repro`` run again."""
    stages = read_stages(project_dir)

    def names(entries: list[Any]) -> list[str]:
        return [n for e in entries for n in ([e] if isinstance(e, str) else [k for ks in e.values() for k in ks])]

    def covers(param: str, key: str) -> bool:
        return key == param or key.startswith(param + ".") or param.startswith(key + ".")

    direct = {s for s, spec in stages.items() if any(covers(p, k) for p in names(spec.get("params", [])) for k in keys)}
    return direct | {s for s, before in ancestors.items() if before & direct}


def changed_stages(project_dir: Path) -> set[str]:
    """Stages DVC's status finds changed (in-process, one pass over the whole graph)."""
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        return {name.split(":")[-1] for name in repo.status()}


def needs_dvc(stage: str, changed: set[str], ancestors: set[str], ran: set[str]) -> bool:
    """Whether ``dvc repro`` could do anything for ``stage``: it changed by itself, or a stage
    upstream of it changed or ran in this flow. Otherwise DVC would skip it: so does the flow,
    without starting DVC (a no-op flow costs one ``dvc status``, not one DVC start per stage)."""
    return stage in changed or bool(ancestors & (changed | ran))


def check_stage_settings(params: Params, stages: list[str]) -> None:
    cfg = params.orchestration
    for key, mapping in (("stage_retries", cfg.stage_retries), ("stage_timeout_s", cfg.stage_timeout_s)):
        unknown = sorted(set(mapping) - set(stages))
        if unknown:
            raise ParamsError(
                f"params.yaml: orchestration.{key}: unknown stage {', '.join(unknown)} (stages: {', '.join(stages)})"
            )


def stage_settings(params: Params, stage: str) -> dict[str, Any]:
    cfg = params.orchestration
    return {
        "retries": cfg.stage_retries.get(stage, cfg.retries),
        "retry_delay_seconds": cfg.retry_delay_s,
        "timeout_seconds": cfg.stage_timeout_s.get(stage, cfg.timeout_s),
    }


def run_stage(stage: str, project_dir: Path, log: Callable[[str], None] = print) -> StageResult:
    """``dvc repro --single-item <stage>``: runs the stage only if DVC finds it changed, updates
    ``dvc.lock``; streams its output to ``log``; StageFailed with the stage's error on failure."""
    env = tools_first_env()  # the project's dvc and imdb-mlops
    env.setdefault("DVC_NO_ANALYTICS", "1")
    began = time.monotonic()
    process = subprocess.Popen(
        ["dvc", "repro", "--single-item", stage],
        cwd=project_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # a timeout or cancel kills the whole stage, not just dvc
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n").split("\r")[-1]  # progress bars: keep the last redraw
            if line.strip():
                lines.append(line)
                log(line)
        code = process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    if code != 0:
        raise StageFailed(f"stage '{stage}' failed: {stage_error(lines, code)}")
    ran = not any(SKIPPED in line for line in lines)
    return StageResult(stage, ran, round(time.monotonic() - began, 2))


def stage_error(lines: list[str], code: int) -> str:
    """The stage's own one-line error (``error: ...``), else DVC's, else the exit code."""
    ours = [line for line in lines if line.startswith("error: ")]
    if ours:
        return ours[-1].removeprefix("error: ")
    dvc = [line for line in lines if line.startswith("ERROR: ")]
    if dvc:
        return dvc[-1].removeprefix("ERROR: ")
    return f"exited with {code}" + (f": {lines[-1]}" if lines else "")


def tag_training_run(project_dir: Path, overrides: dict[str, Any], flow_run_id: str | None) -> str | None:
    """Record the flow's overrides and run id on the MLflow training run; its id, if there is one."""
    path = project_dir / "reports" / "train_run.json"
    if not path.exists():
        return None
    from mlflow import MlflowClient

    from imdb_mlops.registry.tracking import resolved_uri, tracking_uri

    info = read_json(path)
    run_id = info["run_id"]
    # The store the train stage wrote to (recorded in the run file), whatever the environment says now.
    recorded = info.get("tracking_uri")
    client = MlflowClient(tracking_uri=resolved_uri(recorded, project_dir) if recorded else tracking_uri(project_dir))
    client.set_tag(run_id, "flow.overrides", json.dumps(overrides, sort_keys=True, default=str))
    if flow_run_id:
        client.set_tag(run_id, "prefect.flow_run_id", flow_run_id)
    return run_id
