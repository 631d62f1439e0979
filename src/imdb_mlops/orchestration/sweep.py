"""``imdb-mlops sweep``: a hyperparameter search in which Optuna chooses the values and every trial
is a DVC experiment.

Each trial is ``dvc exp run --temp --name STUDY-tNNN -S key=value ... STAGE`` (a temporary
workspace, so several run at once and the user's workspace is untouched): ``dvc exp show`` lists
it with its params and metrics, ``dvc exp apply`` brings it back. The trial's train stage reports
each evaluation to the study and stops when the pruner says so
(:mod:`imdb_mlops.sweeps.trial_link`); its MLflow run is a child of the sweep's parent run.

Several processes, on one machine or many, join one study through its storage; a trial is claimed
under a lock (:mod:`imdb_mlops.sweeps.storage`), so the study never holds more than
``sweep.trials`` trials that did not fail, and a trial whose machine died is marked failed and
replaced."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import ParamsError, PipelineError
from imdb_mlops.common.processes import tools_first_env
from imdb_mlops.config import SweepConfig
from imdb_mlops.config.overrides import resolve_overrides, write_overrides
from imdb_mlops.orchestration.dvc_stages import stage_graph, stages_reached
from imdb_mlops.orchestration.experiments import exp_run_command
from imdb_mlops.sweeps.storage import (
    HEARTBEAT_ATTR,
    Heartbeat,
    claim_lock,
    fail_stale_trials,
    open_storage,
    storage_kind,
    storage_spec,
)
from imdb_mlops.sweeps.trial_link import TrialLink, make_pruner

SWEEPS_DIR = Path(".sweeps")  # per study: each trial's dvc output (logs/) and the pictures (figures/)
TRAIN_METRICS = "reports/train_metrics.json"
EVAL_METRICS = "reports/metrics.json"


@dataclass
class TrialOutcome:
    number: int
    state: str  # completed | pruned | failed
    params: dict[str, Any]
    experiment: str
    value: float | None = None
    test: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""


def make_study(cfg: SweepConfig, study_name: str, spec: str) -> Any:
    """The study in its shared storage, created by whoever comes first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    sampler = samplers[cfg.sampler](seed=cfg.seed)
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(spec),
        direction=cfg.direction,
        sampler=sampler,
        pruner=make_pruner(cfg.pruner),
        load_if_exists=True,
    )


def suggest(trial: Any, cfg: SweepConfig) -> dict[str, Any]:
    """The trial's value of each param in the search space."""
    values: dict[str, Any] = {}
    for key, dim in cfg.space.items():
        if dim.type == "categorical":
            values[key] = trial.suggest_categorical(key, dim.choices)
        elif dim.type == "int":
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1))
        else:
            values[key] = trial.suggest_float(
                key, float(dim.low), float(dim.high), log=dim.type == "log_float", step=dim.step
            )
    return values


def check_space(cfg: SweepConfig, project_dir: Path, base: dict[str, Any]) -> None:
    """Every bound and choice of the space is a valid value of its param (ParamsError otherwise),
    before any trial runs."""
    for key, dim in cfg.space.items():
        for value in dim.choices or [dim.low, dim.high]:
            try:
                resolve_overrides(project_dir, {**base, key: value}, option="sweep.space")
            except ParamsError as exc:
                problem = str(exc).rpartition(f"{key}: ")[2] or str(exc)
                raise ParamsError(f"sweep.space.{key}: {value!r} is not a valid value: {problem}") from None


def first_varying_stage(project_dir: Path, target: str, keys: list[str]) -> tuple[list[str], str | None]:
    """(the stages up to ``target`` that every trial computes alike, the first one the swept ``keys``
    reach): parallel trials after the first wait until it has passed the shared ones, then take them
    from DVC's run-cache instead of computing them again at the same time. ([], None) where none is shared."""
    if not (project_dir / "dvc.yaml").is_file():
        return [], None
    order, ancestors = stage_graph(project_dir)
    if target not in ancestors:
        return [], None
    path = [s for s in order if s in ancestors[target] | {target}]
    reached = stages_reached(project_dir, keys, ancestors)
    varying = next((s for s in path if s in reached), None)
    shared = path[: path.index(varying)] if varying else []
    return (shared, varying) if shared else ([], None)


def experiment_name(study: str, number: int) -> str:
    return f"{study}-t{number:03d}"


def experiment_ref(baseline: str, name: str) -> str:
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def read_from_ref(project_dir: Path, ref: str, path: str) -> dict[str, Any]:
    """A metrics file as the experiment's commit holds it ({} where it has none)."""
    out = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=project_dir, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}


def git_head(project_dir: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True)
    if out.returncode != 0:
        raise PipelineError(f"{project_dir}: not a git repository with a commit; DVC experiments need one")
    return out.stdout.strip()


class Sweep:
    """One process's share of a study: ``jobs`` threads that claim, run and report trials until
    the study holds ``cfg.trials`` trials that did not fail."""

    def __init__(
        self,
        cfg: SweepConfig,
        study_name: str,
        project_dir: Path,
        base_overrides: dict[str, Any],
        parent_run_id: str,
        study: Any,
        spec: str,
        on_line: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.study_name, self.project_dir = cfg, study_name, project_dir
        self.base, self.parent_run_id, self.on_line = base_overrides, parent_run_id, on_line
        self.study, self.spec = study, spec
        self.baseline = git_head(project_dir)
        self.outcomes: list[TrialOutcome] = []
        self.errors: list[Exception] = []
        self.stopping = threading.Event()
        self.on_trial: Callable[[TrialOutcome], None] = lambda outcome: None
        self._lock = threading.Lock()
        self.first_log: Path | None = None  # the dvc output of this process's first trial

    def claim(self) -> tuple[Any, dict[str, Any]] | None:
        """The next trial and its values, or None when the study has its trials."""
        from optuna.trial import TrialState

        with self._lock, claim_lock(self.spec, self.study_name):
            for number in fail_stale_trials(self.study, self.cfg.heartbeat_s):
                self.on_line(f"trial {number}: its machine stopped answering; marked failed")
            live = [t for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
            if len(live) >= self.cfg.trials:
                return None
            trial = self.study.ask()
            trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            values = suggest(trial, self.cfg)
            trial.set_user_attr("dvc_experiment", experiment_name(self.study_name, trial.number))
            trial.set_user_attr("overrides", {**self.base, **values})  # what --apply-best writes
            return trial, values

    def run_trial(self, trial: Any, values: dict[str, Any]) -> TrialOutcome:
        name = experiment_name(self.study_name, trial.number)
        outcome = TrialOutcome(trial.number, "failed", values, name)
        link = TrialLink(
            self.study_name,
            self.spec,
            trial._trial_id,
            trial.number,
            self.cfg.objective,
            self.parent_run_id,
            self.cfg.pruner.model_dump(),
        )
        command = exp_run_command({**self.base, **values}, name, temp=True, targets=(self.cfg.stage,))
        log_path = self.project_dir / SWEEPS_DIR / self.study_name / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.first_log = self.first_log or log_path
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        self.on_line(f"trial {trial.number} started: {shown}")
        began = time.perf_counter()
        with Heartbeat(trial, self.cfg.heartbeat_s), log_path.open("wb") as log:
            code = subprocess.call(
                command,
                cwd=self.project_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=tools_first_env({**os.environ, **link.to_env()}),
            )
        outcome.seconds = round(time.perf_counter() - began, 1)
        ref = experiment_ref(self.baseline, name)
        train = read_from_ref(self.project_dir, ref, TRAIN_METRICS) if code == 0 else {}
        value = (train.get("validation") or {}).get(self.cfg.objective)
        test = read_from_ref(self.project_dir, ref, EVAL_METRICS) if code == 0 else {}
        outcome.test = {k: v for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if code != 0 or value is None:
            outcome.error = f"dvc exp run exited {code}; see {log_path.relative_to(self.project_dir)}"
            self.tell(trial, "failed")
        else:
            outcome.value = float(value)
            outcome.state = "pruned" if (train.get("sweep") or {}).get("pruned") else "completed"
            self.tell(trial, outcome.state, outcome.value)
        return outcome

    def tell(self, trial: Any, state: str, value: float | None = None) -> None:
        from optuna.trial import TrialState

        try:
            if state == "completed":
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        except (ValueError, RuntimeError) as exc:  # marked failed meanwhile (its heartbeat was late)
            self.on_line(f"trial {trial.number}: could not record {state}: {exc}")

    def worker(self) -> None:
        try:
            while not self.errors and not self.stopping.is_set() and (claimed := self.claim()) is not None:
                outcome = self.run_trial(*claimed)
                with self._lock:
                    self.outcomes.append(outcome)
                detail = f"{self.cfg.objective} {outcome.value:.4f}" if outcome.value is not None else outcome.error
                self.on_line(f"trial {outcome.number} {outcome.state} in {outcome.seconds:.0f} s: {detail}")
                self.on_trial(outcome)
        except Exception as exc:  # raised again by run(), after the other jobs stop
            self.errors.append(exc)

    def wait_for_shared_stages(self, first: threading.Thread) -> None:
        """Until the first trial starts its first varying stage (or ends): the stages before it are the
        same for every trial, and the other jobs then take them from DVC's run-cache."""
        shared, varying = first_varying_stage(self.project_dir, self.cfg.stage, list(self.cfg.space))
        if varying is None:
            return
        self.on_line(
            f"the other jobs start once the first trial has run {', '.join(shared)} (the same for every trial)"
        )
        marks = (f"Running stage '{varying}'", f"Stage '{varying}'")
        while first.is_alive() and not self.outcomes and not self.errors:
            log = self.first_log
            if log is not None and log.exists() and any(m in log.read_text(errors="replace") for m in marks):
                return
            time.sleep(0.5)

    def run(self, jobs: int, on_trial: Callable[[TrialOutcome], None] = lambda outcome: None) -> list[TrialOutcome]:
        """Run trials on ``jobs`` threads until the study is full; ``on_trial`` sees each outcome."""
        self.on_trial = on_trial
        threads = [threading.Thread(target=self.worker, name=f"sweep-job-{k}") for k in range(jobs)]
        try:
            threads[0].start()
            if jobs > 1:
                self.wait_for_shared_stages(threads[0])
            for thread in threads[1:]:
                thread.start()
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:  # Ctrl-C reached the trials' dvc too: claim no more, let them end
            self.stopping.set()
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            raise
        if self.errors:
            raise self.errors[0]
        return sorted(self.outcomes, key=lambda o: o.number)


@dataclass
class SweepResult:
    study: str
    outcomes: list[TrialOutcome]  # this process's trials
    best_number: int | None
    best_experiment: str | None
    best_value: float | None
    parent_run_id: str
    figures: list[str]


def run_sweep(
    cfg: SweepConfig,
    tracking: Any,
    project_dir: Path,
    base_overrides: dict[str, Any],
    study_name: str | None = None,
    jobs: int | None = None,
    on_line: Callable[[str], None] = print,
) -> tuple[SweepResult, Any]:
    """Join (or start) the study and run trials until it is full; then the pictures on the MLflow
    parent run. Returns the result and the study (for the table)."""
    from imdb_mlops.sweeps import tracking as sweep_tracking
    from imdb_mlops.sweeps.report import study_figures

    name = study_name or cfg.study
    check_space(cfg, project_dir, base_overrides)
    spec = storage_spec(cfg.storage, name, project_dir)
    with claim_lock(spec, name):  # the first process creates the storage's tables, the study, the parent run
        study = make_study(cfg, name, spec)
        parent = sweep_tracking.parent_run(study, name, cfg, tracking, storage_kind(spec))
    sweep = Sweep(cfg, name, project_dir, base_overrides, parent, study, spec, on_line)
    outcomes = sweep.run(jobs or cfg.jobs, on_trial=lambda o: sweep_tracking.mark_child(parent, name, o, cfg.objective))
    best = best_trial(study)
    figures = study_figures(study, project_dir / SWEEPS_DIR / name / "figures")
    sweep_tracking.log_study_figures(parent, project_dir / SWEEPS_DIR / name / "figures")
    sweep_tracking.close_parent(parent, best, cfg.objective)
    return SweepResult(
        name,
        outcomes,
        best.number if best else None,
        best.user_attrs.get("dvc_experiment") if best else None,
        best.value if best else None,
        parent,
        figures,
    ), study


def best_trial(study: Any) -> Any | None:
    """The best completed trial (None before any completed)."""
    try:
        return study.best_trial
    except ValueError:
        return None


def apply_best(cfg: SweepConfig, project_dir: Path, study_name: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The study's best trial's params written into ``params.yaml`` (every ``-S`` its
    ``dvc exp run`` had, as ``dvc exp apply`` sets them; comments and the other params kept),
    ready for ``dvc repro``, which takes the trial's stages from DVC's run-cache instead of
    training again. Returns the trial and what was written."""
    import optuna

    name = study_name or cfg.study
    spec = storage_spec(cfg.storage, name, project_dir)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(spec))
    except KeyError:
        raise PipelineError(
            f"study {name}: not found in its storage ({storage_kind(spec)}); run `imdb-mlops sweep`"
        ) from None
    best = best_trial(study)
    if best is None:
        raise PipelineError(f"study {name}: no completed trial yet; run `imdb-mlops sweep` first")
    overrides = best.user_attrs.get("overrides") or best.params
    write_overrides(project_dir / "params.yaml", overrides)
    return best, overrides
