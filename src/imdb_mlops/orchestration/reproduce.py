"""Rebuild a registered classifier from what its lineage records, and compare the numbers.

A version's training run records the DVC experiment that made it (``dvc.exp.name``, its ref
``refs/exps/…`` and baseline commit), the commit, whether code outside the params was dirty, the
exact params (artifact ``params.yaml``) and the ``dvc.lock`` hashes of its data and model. From
those, :func:`plan` decides what to check out, and :func:`reproduce`:

1. clones the repository (``git clone --no-checkout``) into a sibling folder of it, so relative
   paths in params such as ``../shared/imdb`` resolve as they do in the repository, and checks out
   the experiment's commit (fetched from ``refs/exps``) or the recorded commit plus the recorded
   params;
2. optionally pulls cached data from a DVC remote (``dvc pull -r NAME``);
3. runs ``dvc repro --force --no-run-cache evaluate`` there, against a tracking store of its own (the
   registry is only read, never written);
4. compares the test metrics and the data/model hashes with the version's, and removes the clone.

The user's working tree, DVC cache and registry are never written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imdb_mlops.common.errors import PipelineError, first_line
from imdb_mlops.common.processes import tools_first_env
from imdb_mlops.registry.tracking import dvc_lock_hashes
from imdb_mlops.registry.versions import get_version

COMPARED_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "ece")
TARGET_STAGE = "evaluate"
GPU_TOLERANCE = 0.005  # kernels on a GPU are not bitwise deterministic; CPU runs must match exactly


@dataclass
class Plan:
    """What a version's lineage says to check out, and the figures to get back."""

    version: str
    run_id: str
    commit: str
    experiment: str | None  # DVC experiment name
    ref: str | None  # refs/exps/... holding the experiment's commit
    params_text: str | None  # recorded params.yaml, written over the commit's when there is no experiment
    expected_metrics: dict[str, float]
    expected_hashes: dict[str, str]  # dvc.<path>.md5 -> md5, from the version's tags
    tolerance: float
    warnings: list[str] = field(default_factory=list)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120)


def plan(client: Any, name: str, ref: str, repo: Path, strict: bool = False) -> Plan:
    """Read the version's lineage; a one-line PipelineError when it cannot be reproduced here."""
    from mlflow.exceptions import MlflowException

    version = get_version(client, name, ref)
    label = f"{name} version {version.version}"
    run_id = version.tags.get("training_run_id") or version.run_id
    tags = version.tags
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PipelineError(f"reproduce: {label}: its training run {run_id} is not in this tracking store") from None
    run_tags = run.data.tags
    commit = run_tags.get("mlflow.source.git.commit", "unknown")
    if run_tags.get("git.dirty_code") == "true" or tags.get("reproducible") == "false":
        raise PipelineError(
            f"reproduce: {label} was trained from code with uncommitted changes (git.dirty_code=true at "
            f"{commit[:12]}); the repository does not hold that code"
        )
    experiment, exp_ref = run_tags.get("dvc.exp.name"), run_tags.get("dvc.exp.ref")
    params_text = None
    if exp_ref:
        if _git(repo, "rev-parse", "--verify", "-q", f"{exp_ref}^{{commit}}").returncode != 0:
            raise PipelineError(
                f"reproduce: {label} comes from DVC experiment '{experiment}' ({exp_ref}), which is not in "
                f"this repository; bring it with: dvc exp pull <git remote> {experiment}"
            )
    else:
        params_text = _recorded_params(client, run_id)
        if params_text is None or commit == "unknown":
            raise PipelineError(
                f"reproduce: {label} was registered before runs recorded their experiment and params "
                f"(no dvc.exp.ref tag, no params.yaml artifact in run {run_id}); reproduce it by hand: "
                f"git checkout {commit[:12]} && dvc repro {TARGET_STAGE}"
            )
        if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            raise PipelineError(
                f"reproduce: {label}: commit {commit[:12]} is not in this repository; git fetch it first"
            )
    expected = {k: run.data.metrics[f"test_{k}"] for k in COMPARED_METRICS if f"test_{k}" in run.data.metrics}
    if not expected:
        raise PipelineError(f"reproduce: {label}: its training run {run_id} has no test metrics to compare with")
    hashes = {k: v for k, v in tags.items() if k.startswith("dvc.") and k.endswith(".md5")}
    on_gpu = run_tags.get("device", "cpu").startswith("cuda")
    result = Plan(
        str(version.version), run_id, commit, experiment, exp_ref, params_text, expected, hashes,
        GPU_TOLERANCE if on_gpu else 0.0,
    )  # fmt: skip
    result.warnings.extend(_package_drift(tags, strict, label))
    return result


def _recorded_params(client: Any, run_id: str) -> str | None:
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "params.yaml", tmp)
        except (MlflowException, OSError):
            return None
        return Path(path).read_text(encoding="utf-8")


def _package_drift(tags: dict[str, str], strict: bool, label: str) -> list[str]:
    """A packaged base checkpoint whose installed version differs from the recorded one."""
    import importlib.metadata

    package, recorded = tags.get("model.base.package"), tags.get("model.base.package_version")
    if not package or not recorded:
        return []
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    if installed == recorded:
        return []
    message = f"{label} was trained from {package} {recorded}; this machine has {installed}"
    if strict:
        raise PipelineError(f"reproduce: {message} (--strict)")
    return [f"{message}: the numbers may differ"]


def workdir_for(repo: Path, version: str) -> Path:
    """A sibling of the repository: relative paths in params resolve the same from there."""
    return repo.resolve().parent / f".{repo.resolve().name}.reproduce-v{version}-{os.getpid()}"


def commands(p: Plan, repo: Path, workdir: Path, dvc_remote: str | None) -> list[list[str]]:
    """The commands :func:`reproduce` runs, in order (``git -C`` and ``dvc`` in ``workdir``)."""
    steps = [["git", "clone", "-q", "--no-checkout", str(repo.resolve()), str(workdir)]]
    if p.ref:
        steps.append(["git", "-C", str(workdir), "fetch", "-q", "origin", f"+{p.ref}:{p.ref}"])
        steps.append(["git", "-C", str(workdir), "checkout", "-q", "--detach", p.ref])
    else:
        steps.append(["git", "-C", str(workdir), "checkout", "-q", "--detach", p.commit])
    if dvc_remote:
        steps.append(["dvc", "pull", "-q", "-r", dvc_remote])
    steps.append(["dvc", "repro", "--force", "--no-run-cache", TARGET_STAGE])
    return steps


def reproduce(
    p: Plan, repo: Path, dvc_remote: str | None, log: Callable[[str], None], keep: bool = False
) -> dict[str, Any]:
    """Run :func:`commands`; return ``{"metrics": [(name, registered, reproduced)], "hashes": [...]}``."""
    workdir = workdir_for(repo, p.version)
    if workdir.exists():
        raise PipelineError(f"reproduce: {workdir} exists; remove it (a reproduction left by process {os.getpid()}?)")
    env = tools_first_env(
        {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1"}
    )
    try:
        for step in commands(p, repo, workdir, dvc_remote):
            if step[0] == "dvc" and step[1] == "pull":
                _copy_local_dvc_config(repo, workdir)
            if step[0] == "dvc" and step[1] == "repro" and p.params_text is not None:
                (workdir / "params.yaml").write_text(p.params_text, encoding="utf-8")
            log("$ " + " ".join(step))
            proc = subprocess.run(
                step, cwd=workdir if workdir.exists() else repo, env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                output = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
                detail = first_line(next((line for line in output if "ERROR" in line), output[-1]), 300)
                hint = ""
                if step[1] == "pull":
                    hint = f"; does DVC remote '{dvc_remote}' hold this version's data? (`dvc exp push` or `dvc push` sends it)"
                raise PipelineError(f"reproduce: `{step[0]} {step[1]}` failed in {workdir.name}: {detail}{hint}")
        return compare(p, workdir)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _copy_local_dvc_config(repo: Path, workdir: Path) -> None:
    """Remotes set with ``dvc remote ... --local`` live in the untracked ``.dvc/config.local``."""
    local = repo / ".dvc" / "config.local"
    if local.is_file():
        shutil.copyfile(local, workdir / ".dvc" / "config.local")


def compare(p: Plan, workdir: Path) -> dict[str, Any]:
    from imdb_mlops.common.files import read_json

    metrics = read_json(
        workdir / "reports" / "metrics.json", f"the reproduction wrote no metrics ({TARGET_STAGE} did not run)"
    )
    reproduced_hashes = dvc_lock_hashes(None, workdir)
    rows = [(key, p.expected_metrics[key], metrics.get(key)) for key in p.expected_metrics]
    hashes = [(key, md5, reproduced_hashes.get(key)) for key, md5 in sorted(p.expected_hashes.items())]
    same_metrics = all(isinstance(r, float | int) and abs(r - e) <= p.tolerance for _, e, r in rows)
    same_hashes = p.tolerance > 0 or all(e == r for _, e, r in hashes)  # on a GPU, weights differ in the last bits
    return {"metrics": rows, "hashes": hashes, "tolerance": p.tolerance, "identical": same_metrics and same_hashes}
