"""Register stage and model-registry operations (MLflow registry, aliases ``champion``/``challenger``).

Entry point of the stage: :func:`register`. It

1. logs the served model into the training run: an MLflow pyfunc written as code
   (:mod:`imdb_mlops.serving_model`; nothing pickled) over the shipped ONNX variants and the
   tokenizer, with signature and input example, and the PyTorch checkpoint beside it;
2. registers it as a new version of ``registry.model_name`` with a description and lineage tags
   (test metrics, parity figures, git commit, ``dvc.lock`` data hashes, params digest, run id) and
   sets alias ``challenger`` on it — unless a version of this training run already exists
   (idempotent: re-running adds no version);
3. runs the promotion gate: the first version becomes ``champion``; later ones are scored against the
   champion on the same test reviews, and with ``registry.promotion: auto`` take ``champion`` only
   when they gain at least ``min_improvement`` accuracy and McNemar's exact test on the paired
   predictions gives p < ``mcnemar_alpha``. The decision goes to the run, the version's tags and
   ``reports/register.json``.

The other functions back the ``imdb-mlops registry ...`` and ``predict`` commands: list versions,
promote, roll back to the previous champion, show lineage, resolve ``@alias`` references.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from scipy.stats import binomtest

from imdb_mlops.config import Params, RegistryConfig
from imdb_mlops.errors import PipelineError
from imdb_mlops.outputs import atomic_outputs, write_json
from imdb_mlops.tracking import dvc_lock_hashes, git_commit, read_run_file, setup_mlflow, tracking_uri

console = Console(stderr=True)
PACKAGE_DIR = Path(__file__).resolve().parent
SERVING_MODEL_FILE = PACKAGE_DIR / "serving_model.py"
LABELS = ["negative", "positive"]
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"  # registered-model tag: JSON list of versions that held champion
INPUT_EXAMPLE = ["an awful film", "a delight"]
SERVING_REQUIREMENTS = ("mlflow", "onnxruntime-gpu", "tokenizers", "numpy", "pandas", "scipy")


# ---------------------------------------------------------------------------------------------
# The stage


def register(
    params: Params,
    onnx_dir: Path,
    model_dir: Path,
    raw_dir: Path,
    run_file: Path,
    metrics_path: Path,
    onnx_report_path: Path,
    report_path: Path,
    project_dir: Path = Path("."),
) -> dict[str, Any]:
    """Run the stage; returns (and writes to ``report_path``) the version and the gate decision."""
    import mlflow
    from mlflow import MlflowClient

    cfg = params.registry
    run_id = read_run_file(run_file)["run_id"]
    onnx_report = _read_json(onnx_report_path, "run the export stage first (dvc repro export)")
    test_metrics = _read_json(metrics_path, "run the evaluate stage first (dvc repro evaluate)")
    settings = serving_settings(params, onnx_dir, onnx_report)
    setup_mlflow(params, project_dir)
    client = MlflowClient()
    _ensure_registered_model(client, cfg.model_name)

    existing = versions_of_run(client, cfg.model_name, run_id)
    if existing:
        model_version = existing[0]
        console.print(
            f"Training run {run_id[:8]} is already registered as {cfg.model_name} version {model_version.version}; "
            "no new version."
        )
        decision = {"action": "already_registered"}
    else:
        tags = lineage_tags(params, client, run_id, test_metrics, onnx_report, settings, project_dir)
        model_version = _log_and_register(
            params, client, run_id, onnx_dir, model_dir, settings, tags, _description(test_metrics, settings, params)
        )
        client.set_registered_model_alias(cfg.model_name, CHALLENGER, model_version.version)
        decision = promotion_gate(params, client, model_version.version, raw_dir)
        _record_decision(client, cfg.model_name, model_version.version, run_id, decision)

    report = {
        "model_name": cfg.model_name,
        "version": int(model_version.version),
        "run_id": run_id,
        "tracking_uri": tracking_uri(project_dir),
        "aliases": sorted(client.get_model_version(cfg.model_name, model_version.version).aliases),
        "serving": {"cpu_variant": settings["cpu_variant"], "gpu_variant": settings["gpu_variant"]},
        "gate": decision,
    }
    with atomic_outputs(report_path) as (tmp_report,):
        write_json(tmp_report, report)
    _print_decision(report)
    return report


def serving_settings(params: Params, onnx_dir: Path, onnx_report: dict[str, Any]) -> dict[str, Any]:
    """What the served model needs besides its files: variants, truncation, request limits."""
    from transformers import AutoTokenizer

    from imdb_mlops.truncation import head_tokens, special_token_layout

    export_info = _read_json(onnx_dir / "export.json", "run the export stage first (dvc repro export)")
    shipped = [v for v in export_info["shipped"] if (onnx_dir / f"model.{v}.onnx").exists()]
    if not shipped:
        raise PipelineError(f"{onnx_dir}: no shipped ONNX variant found (model.<variant>.onnx)")
    if not (onnx_dir / "tokenizer.json").exists():
        raise PipelineError(f"{onnx_dir}/tokenizer.json: missing; the served model needs the fast tokenizer file")
    cfg = params.registry
    cpu_variant, gpu_variant = choose_variants(shipped, cfg.variant)
    tokenizer = AutoTokenizer.from_pretrained(str(onnx_dir), trust_remote_code=False)
    n_prefix, n_suffix = special_token_layout(
        lambda text, special: tokenizer(text, add_special_tokens=special)["input_ids"]
    )
    tok = params.tokenize
    share = tok.head_share if tok.truncation == "head_tail" else None
    return {
        "labels": export_info.get("labels", LABELS),
        "shipped": shipped,
        "cpu_variant": cpu_variant,
        "gpu_variant": gpu_variant,
        "max_length": tok.max_length,
        "n_prefix": n_prefix,
        "n_suffix": n_suffix,
        "head_tokens": head_tokens(tok.max_length, n_prefix, n_suffix, share),
        "pad_token_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        "batch_size": cfg.batch_size,
        "max_texts_per_request": cfg.max_texts_per_request,
        "max_text_chars": cfg.max_text_chars,
        "parity_provider": onnx_report.get("provider"),
    }


def choose_variants(shipped: list[str], requested: str) -> tuple[str, str]:
    """(CPU variant, GPU variant) the served model runs, from those that passed parity."""
    if requested != "auto":
        if requested not in shipped:
            raise PipelineError(
                f"registry.variant: '{requested}' was not shipped by the export stage (shipped: {', '.join(shipped)})"
            )
        return requested, requested
    cpu = next(v for v in ("int8", "fp32", "fp16") if v in shipped)
    gpu = next(v for v in ("fp16", "fp32", "int8") if v in shipped)
    return cpu, gpu


def lineage_tags(
    params: Params,
    client: Any,
    run_id: str,
    test_metrics: dict[str, Any],
    onnx_report: dict[str, Any],
    settings: dict[str, Any],
    project_dir: Path = Path("."),
) -> dict[str, str]:
    """Everything needed to trace a version back to its data, code and params, as string tags."""
    run = client.get_run(run_id)
    tags = {
        "training_run_id": run_id,
        "git.commit": run.data.tags.get("mlflow.source.git.commit", "unknown"),
        "git.dirty": run.data.tags.get("git.dirty", "unknown"),
        "register.git.commit": git_commit(project_dir)["mlflow.source.git.commit"],
        "params_digest": params_digest(params),
        "model.base": params.model.name,
        "serving.cpu_variant": settings["cpu_variant"],
        "serving.gpu_variant": settings["gpu_variant"],
        "onnx.shipped": ",".join(settings["shipped"]),
    }
    hashes = dvc_lock_hashes(("ingest", "tokenize", "train"), project_dir)
    tags.update({k: v for k, v in hashes.items() if k.startswith(("dvc.data/", "dvc.models/"))})
    for key in ("n", "accuracy", "f1", "roc_auc", "ece"):
        if key in test_metrics:
            tags[f"test.{key}"] = str(test_metrics[key])
    for name, variant in onnx_report.get("variants", {}).items():
        for key in ("max_abs_diff", "agreement", "accuracy"):
            if key in variant:
                tags[f"onnx.{name}.{key}"] = f"{variant[key]:.6g}"
    return tags


def params_digest(params: Params) -> str:
    """sha256 of the validated params (canonical JSON): equal digests, equal settings."""
    return hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode()).hexdigest()


def _log_and_register(
    params: Params,
    client: Any,
    run_id: str,
    onnx_dir: Path,
    model_dir: Path,
    settings: dict[str, Any],
    tags: dict[str, str],
    description: str,
) -> Any:
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    name = params.registry.model_name
    # One unnamed string column: a list of strings, {"inputs": [...]} and a one-column DataFrame
    # (whatever its column is called) all fit it.
    signature = ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("double", "probability"), ColSpec("double", "positive_probability")]),
    )
    with tempfile.TemporaryDirectory(prefix="register-") as tmp:
        work = Path(tmp)
        settings_path = work / "serving_config.json"
        settings_path.write_text(json.dumps(settings, indent=2))
        code_dir = work / "imdb_mlops"
        shutil.copytree(PACKAGE_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        example = pd.DataFrame({"text": INPUT_EXAMPLE})
        with mlflow.start_run(run_id=run_id):
            console.print(f"Logging the ONNX pyfunc ({settings['cpu_variant']} on CPU) into run {run_id[:8]} ...")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(SERVING_MODEL_FILE),
                artifacts={"onnx": str(onnx_dir), "serving_config": str(settings_path)},
                code_paths=[str(code_dir)],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
            )
            if (model_dir / "config.json").exists():
                mlflow.log_artifacts(str(model_dir), "pytorch_model")
    model_version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, model_version.version, description=description)
    _wait_ready(client, name, model_version.version)
    console.print(f"Registered {name} version {model_version.version} (alias {CHALLENGER}).")
    return model_version


def _requirements() -> list[str]:
    return _requirements_of(SERVING_REQUIREMENTS)


def _requirements_of(packages: tuple[str, ...]) -> list[str]:
    """``package==installed version`` pins for a logged model's environment."""
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _wait_ready(client: Any, name: str, model_version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get_model_version(name, model_version).status != "READY":
        if time.monotonic() > deadline:
            raise PipelineError(f"registry: {name} version {model_version} not READY after {timeout_s:.0f} s")
        time.sleep(0.5)


def _description(test_metrics: dict[str, Any], settings: dict[str, Any], params: Params) -> str:
    figures = ", ".join(
        f"{key} {test_metrics[key]:.4f}" for key in ("accuracy", "f1", "roc_auc") if key in test_metrics
    )
    return (
        f"IMDB sentiment classifier fine-tuned from {params.model.name}. Test ({test_metrics.get('n', '?')} reviews): "
        f"{figures}. Serves ONNX {settings['cpu_variant']} on CPU, {settings['gpu_variant']} on GPU "
        f"(shipped: {', '.join(settings['shipped'])}). Input: review texts; output: label, probability."
    )


# ---------------------------------------------------------------------------------------------
# Promotion gate


def promotion_gate(params: Params, client: Any, challenger: str, raw_dir: Path) -> dict[str, Any]:
    """Decide whether ``champion`` moves to the new version; move it when it should."""
    cfg = params.registry
    champion = current_champion(client, cfg.model_name)
    if champion is None:
        set_champion(client, cfg.model_name, challenger, reason="first registered version")
        return {"action": "promoted", "reason": "first registered version", "champion": int(challenger)}
    texts, labels = gate_reviews(raw_dir, cfg.gate_samples, params.seed)
    console.print(
        f"Promotion gate: version {challenger} (challenger) vs {champion} (champion) on {len(texts):,} test reviews"
    )
    predicted = {
        which: predict_labels(f"models:/{cfg.model_name}/{v}", texts, cfg, f"version {v} ({which})")
        for which, v in (("challenger", challenger), ("champion", champion))
    }
    decision = gate_decision(labels, predicted["challenger"], predicted["champion"], cfg)
    decision["champion_before"] = int(champion)
    if decision["passes"] and cfg.promotion == "auto":
        set_champion(client, cfg.model_name, challenger, reason=decision["reason"])
        decision["action"] = "promoted"
    elif decision["passes"]:
        decision["action"] = "awaiting_manual_promotion"
    else:
        decision["action"] = "kept_champion"
    decision["champion"] = int(current_champion(client, cfg.model_name) or 0)
    return decision


def gate_reviews(raw_dir: Path, samples: int | None, seed: int) -> tuple[list[str], np.ndarray]:
    """The test reviews both models are scored on: all, or a seeded stratified sample."""
    path = raw_dir / "test.parquet"
    if not path.exists():
        raise PipelineError(f"{path}: missing; run the ingest stage first (dvc repro ingest)")
    frame = pd.read_parquet(path, columns=["text", "label"])
    if samples is not None and samples < len(frame):
        frame = frame.groupby("label", group_keys=False).sample(frac=samples / len(frame), random_state=seed)
        frame = frame.sort_index()
    return frame["text"].tolist(), frame["label"].to_numpy()


def gate_decision(
    labels: np.ndarray, challenger: np.ndarray, champion: np.ndarray, cfg: RegistryConfig
) -> dict[str, Any]:
    """Accuracy gain and McNemar's exact test on paired predictions; ``passes`` when both hold."""
    labels, challenger, champion = map(np.asarray, (labels, challenger, champion))
    right_new, right_old = challenger == labels, champion == labels
    only_new = int(np.sum(right_new & ~right_old))  # challenger right, champion wrong
    only_old = int(np.sum(~right_new & right_old))
    gain = float(right_new.mean() - right_old.mean())
    p_value = mcnemar_p_value(only_new, only_old)
    passes = gain >= cfg.min_improvement and p_value < cfg.mcnemar_alpha and only_new > only_old
    if passes:
        reason = f"accuracy +{gain * 100:.2f} points (>= {cfg.min_improvement * 100:.2f}), McNemar p={p_value:.3g}"
    elif gain < cfg.min_improvement:
        reason = f"accuracy gain {gain * 100:+.2f} points < required {cfg.min_improvement * 100:.2f}"
    else:
        reason = f"McNemar p={p_value:.3g} >= {cfg.mcnemar_alpha} (gain {gain * 100:+.2f} points not significant)"
    return {
        "n": int(len(labels)),
        "challenger_accuracy": round(float(right_new.mean()), 5),
        "champion_accuracy": round(float(right_old.mean()), 5),
        "accuracy_gain": round(gain, 5),
        "only_challenger_right": only_new,
        "only_champion_right": only_old,
        "mcnemar_p_value": p_value,
        "passes": bool(passes),
        "reason": reason,
    }


def mcnemar_p_value(only_new: int, only_old: int) -> float:
    """Two-sided exact McNemar test: the discordant pairs against a fair coin."""
    discordant = only_new + only_old
    if discordant == 0:
        return 1.0
    return float(binomtest(min(only_new, only_old), discordant, 0.5).pvalue)


def predict_labels(model_uri: str, texts: list[str], cfg: RegistryConfig, what: str) -> np.ndarray:
    """0/1 predictions of a registered model (the served pyfunc itself) on ``texts``."""
    frame = predict_chunked(load_pyfunc(model_uri), texts, cfg.max_texts_per_request, cfg.max_text_chars, what)
    return (frame["label"] == LABELS[1]).to_numpy().astype(int)


def predict_chunked(
    model: Any, texts: list[str], chunk: int, truncate_chars: int | None = None, what: str = "reviews"
) -> pd.DataFrame:
    """Predictions in requests of at most ``chunk`` texts (the served model's limit), with a progress
    bar; ``truncate_chars`` cuts over-long reviews to their start instead of having them refused."""
    frames = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"Scoring {what}", total=len(texts))
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            if truncate_chars is not None:
                part = [t[:truncate_chars] for t in part]
            frames.append(model.predict(pd.DataFrame({"text": part})))
            progress.advance(task, len(part))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "probability", "positive_probability"])


def _record_decision(client: Any, name: str, model_version: str, run_id: str, decision: dict[str, Any]) -> None:
    import mlflow

    tags = {f"gate.{k}": str(v) for k, v in decision.items() if k != "passes"}
    for key, value in tags.items():
        client.set_model_version_tag(name, model_version, key, value)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags({**tags, "registry.model": name, "registry.version": model_version})
        numbers = {
            f"gate_{k}": float(v) for k, v in decision.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numbers:
            mlflow.log_metrics(numbers)


# ---------------------------------------------------------------------------------------------
# Registry operations (CLI)


def connect(params: Params, project_dir: Path = Path(".")) -> Any:
    """An MlflowClient on the project's tracking store (server checked first)."""
    import mlflow
    from mlflow import MlflowClient

    from imdb_mlops.tracking import ensure_tracking_reachable

    uri = tracking_uri(project_dir)
    ensure_tracking_reachable(uri, params.tracking.timeout_s)
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            description="Binary sentiment of IMDB movie reviews. Versions are registered by the DVC register stage; "
            f"'{CHAMPION}' is served, '{CHALLENGER}' is the latest candidate.",
        )


def registered_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise PipelineError(
            f"registry: no registered model '{name}' at {client.tracking_uri}; run the pipeline (dvc repro) first"
        ) from None


def all_versions(client: Any, name: str) -> list[Any]:
    aliases: dict[str, list[str]] = {}
    for alias, number in registered_model(client, name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    for mv in found:  # search results carry no aliases
        mv._aliases = sorted(aliases.get(str(mv.version), []))
    return found


def versions_of_run(client: Any, name: str, run_id: str) -> list[Any]:
    return [v for v in client.search_model_versions(f"name='{name}'") if run_id in (v.run_id, v.tags.get("training_run_id"))]


def get_version(client: Any, name: str, ref: str) -> Any:
    """A version by number or alias (``3``, ``champion``, ``@champion``)."""
    from mlflow.exceptions import MlflowException

    ref = ref.lstrip("@")
    registered_model(client, name)
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        known = ", ".join(str(v.version) for v in all_versions(client, name)) or "none"
        aliases = ", ".join(sorted(registered_model(client, name).aliases)) or "none"
        raise PipelineError(f"registry: {name} has no version or alias '{ref}' (versions: {known}; aliases: {aliases})") from None


def current_champion(client: Any, name: str) -> str | None:
    aliases = registered_model(client, name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def champion_history(client: Any, name: str) -> list[str]:
    raw = registered_model(client, name).tags.get(HISTORY_TAG)
    try:
        history = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        history = []
    return [str(v) for v in history]


def set_champion(client: Any, name: str, target: str, reason: str) -> None:
    """Point ``champion`` at ``target`` and remember the move (for rollback)."""
    client.set_registered_model_alias(name, CHAMPION, target)
    history = champion_history(client, name)
    if not history or history[-1] != str(target):
        history.append(str(target))
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-100:]))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, target, "promoted_at", now)
    client.set_model_version_tag(name, target, "promotion_reason", reason)


def promote(client: Any, name: str, ref: str, reason: str = "promoted from the CLI") -> tuple[str | None, str]:
    """Move ``champion`` to version ``ref``; returns (previous champion, new champion)."""
    target = str(get_version(client, name, ref).version)
    previous = current_champion(client, name)
    set_champion(client, name, target, reason)
    return previous, str(target)


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Move ``champion`` back to the version that held it before; returns (from, to)."""
    current = current_champion(client, name)
    if current is None:
        raise PipelineError(f"registry: {name} has no champion to roll back from")
    history = champion_history(client, name)
    # Drop the current champion's latest stint; the entry before it is the previous champion.
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise PipelineError(f"registry: {name} version {current} is the first champion; nothing to roll back to")
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, current, "rolled_back_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return current, target


def lineage(client: Any, name: str, ref: str) -> dict[str, Any]:
    """Where a version came from: tags, training run (params, git, datasets), aliases."""
    mv = get_version(client, name, ref)
    run_id = mv.tags.get("training_run_id") or mv.run_id
    info: dict[str, Any] = {
        "version": mv.version,
        "aliases": sorted(mv.aliases),
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
        "source": mv.source,
        "training_run_id": run_id,
        "tags": dict(sorted(mv.tags.items())),
    }
    if run_id:
        run = client.get_run(run_id)
        info["experiment_id"] = run.info.experiment_id
        info["run_status"] = run.info.status
        info["params"] = dict(sorted(run.data.params.items()))
        info["datasets"] = [
            {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ]
    return info


def resolve_model_uri(ref: str | None, name: str) -> str:
    """``None``/``champion``/``@alias``/``3``/``models:/...``/a local folder -> a model URI."""
    if ref is None:
        return f"models:/{name}@{CHAMPION}"
    if ref.startswith(("models:/", "runs:/", "file:", "mlflow-artifacts:")) or Path(ref).exists():
        return ref
    ref = ref.lstrip("@")
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def load_pyfunc(model_uri: str) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise PipelineError(f"{model_uri}: cannot load the model: {str(exc).splitlines()[0][:200]}") from None


def predict_texts(model_uri: str, texts: list[str], chunk: int) -> pd.DataFrame:
    """Label and probability per text, from a registered (or any pyfunc) model loaded once."""
    from mlflow.exceptions import MlflowException

    model = load_pyfunc(model_uri)
    try:
        return predict_chunked(model, texts, chunk)
    except MlflowException as exc:
        raise PipelineError(f"predict: {exc.message.splitlines()[-1]}") from None


def _read_json(path: Path, advice: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; {advice}") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _print_decision(report: dict[str, Any]) -> None:
    gate = report["gate"]
    table = Table(title=f"{report['model_name']} version {report['version']}: {gate['action'].replace('_', ' ')}")
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    for key in ("champion_accuracy", "challenger_accuracy", "accuracy_gain", "mcnemar_p_value", "n"):
        if key in gate:
            value = gate[key]
            table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else str(value))
    if "reason" in gate:
        table.add_row("reason", gate["reason"])
    table.add_row("aliases", ", ".join(report["aliases"]) or "-")
    table.add_row("serving", f"CPU {report['serving']['cpu_variant']}, GPU {report['serving']['gpu_variant']}")
    console.print(table)
