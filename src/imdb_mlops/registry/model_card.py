"""Model cards: the markdown a registered version carries as its description (the MLflow UI renders
it) and as the artifact ``model_card.md`` of its run.

:func:`classifier_card` is built by the register stage from the reports of the run (data, test
metrics, the shipped variants and their gate figures, behavioural checks, the gate); :func:`generator_card` by the generate stage.
Names are portable (:func:`portable_name`): a hub id or ``pkg:`` reference as given, a folder of
the project relative to it, any other folder by its name only, never a path of the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.common.hub import PACKAGE_PREFIX, local_path

DESCRIPTION_LIMIT = 5000  # characters MLflow's SQL stores keep of a version's description
CARD_ARTIFACT = "model_card.md"


def portable_name(value: str, project_dir: Path = Path("."), key: str = "model.name") -> str:
    """``value`` as it can be shown anywhere: no absolute path of this machine."""
    if value.startswith(PACKAGE_PREFIX) or not (value.startswith("~") or Path(value).is_absolute()):
        return value  # a reference, hub id or relative path reads the same on every machine
    try:
        path = local_path(value, key)
    except Exception:
        path = Path(value)
    if path is None:  # a hub id
        return value
    try:
        return path.resolve().relative_to(Path(project_dir).resolve()).as_posix()
    except ValueError:
        return f"local folder '{path.name}'"


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"


def served_rule(settings: dict[str, Any]) -> str:
    """How the served model picks its variant, in words."""
    shipped = ", ".join(settings["shipped"])
    if settings["variant"] == "auto":
        return f"the fastest of {shipped} on the machine it loads on (measured at load)"
    return f"the {settings['variant']} variant (registry.variant; shipped: {shipped})"


def _points(value: Any) -> str:
    return f"{100 * value:+.2f}" if isinstance(value, int | float) else "-"


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def classifier_card(facts: dict[str, Any]) -> str:
    """The card of a classifier version. ``facts``: model_name, version, run_id, base_model,
    data (reports/data.json), metrics (reports/metrics.json), onnx (reports/onnx.json), settings,
    behaviour, gate, params_digest, hashes (dvc.lock), git_commit, confidence_level."""
    metrics, data, behaviour = facts["metrics"], facts["data"], facts.get("behaviour")
    ci = metrics.get("ci", {})
    level = round(100 * facts.get("confidence_level", 0.95))
    lines = [
        f"# {facts['model_name']} version {facts['version']}",
        "",
        "## Intended use and limits",
        "Binary sentiment (negative / positive) of English movie reviews like IMDB's. Input: review texts; "
        "output: label and probability. Not for other domains or languages, not for decisions about people; "
        "long reviews are read as their start and end only; sarcasm and negated negatives are weak "
        "(see the behavioural checks).",
        "",
        "## Training data",
        f"Source `{facts['data_source']}` ({data.get('source', {}).get('format', '?')}, "
        f"digest {data.get('source', {}).get('digest', '?')}).",
        "",
        *_table(
            ("split", "reviews", "positive share"),
            [(name, f"{s['rows']:,}", _num(s.get("positive_share"), 3)) for name, s in data.get("splits", {}).items()],
        ),
        "",
        *[f"- `{path}`: {digest}" for path, digest in facts.get("hashes", {}).items()],
        "",
        "## Model",
        f"Fine-tuned from `{facts['base_model']}`; params digest `{facts['params_digest'][:16]}`; "
        f"training run `{facts['run_id']}`; git `{facts.get('git_commit', 'unknown')[:12]}`. Serves "
        f"{served_rule(facts['settings'])}.",
        "",
        f"## Test metrics ({metrics.get('n', '?'):,} reviews, {level}% bootstrap intervals)",
        *_table(
            ("metric", "value", "interval"),
            [
                (key, _num(metrics.get(key)), f"{_num(ci[key]['low'])} - {_num(ci[key]['high'])}" if key in ci else "")
                for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
                if key in metrics
            ],
        ),
        "",
        f"Calibration: expected calibration error {_num(metrics.get('ece'))}.",
    ]
    for family, slices in metrics.get("slices", {}).items():
        lines += ["", f"### Accuracy by {family.replace('_', ' ')}"]
        lines += _table(
            ("slice", "reviews", "accuracy"),
            [(bucket, f"{s['n']:,}", _num(s.get("accuracy"))) for bucket, s in slices.items()],
        )
    variants = facts.get("onnx", {}).get("variants", {})
    lines += ["", "## Variants (validation reviews, paired against PyTorch fp32)"]
    lines += _table(
        ("variant", "shipped", "accuracy", "change (points)", "95% lower bound", "agreement", "p99 abs prob diff"),
        [
            (name, "yes" if v.get("shipped") else "no", _num(v.get("accuracy")), _points(v.get("accuracy_change")),
             _points(v.get("lower_bound")), _pct(v.get("agreement")), _num(v.get("probability_diff_p99"), 3))
            for name, v in variants.items()
        ],
    )  # fmt: skip
    if behaviour:
        lines += ["", f"## Behavioural checks (suite version {behaviour['suite_version']})"]
        lines += _table(
            ("family", "cases", "pass rate", "weakest test"),
            [
                (family, info["cases"], _pct(info["pass_rate"]), min(info["tests"].items(), key=lambda t: t[1])[0])
                for family, info in behaviour["families"].items()
            ],
        )
    gate = facts.get("gate") or {}
    if gate:
        lines += ["", "## Promotion", f"{gate.get('action', '?').replace('_', ' ')}: {gate.get('reason', '')}"]
    lines += [
        "",
        "## How to reproduce",
        f"`imdb-mlops reproduce {facts['version']}` rebuilds this version from its git commit, params and data "
        f"(DVC) in a sibling clone and compares; `imdb-mlops registry lineage {facts['version']}` lists what it came from.",
    ]
    return "\n".join(lines) + "\n"


def generator_card(facts: dict[str, Any]) -> str:
    """The card of a generator version. ``facts``: model_name, version, run_id, base_model, report
    (reports/generation.json so far)."""
    report = facts["report"]
    quality = report.get("quality", report)
    lines = [
        f"# {facts['model_name']} version {facts['version']}",
        "",
        "## Intended use and limits",
        "Writes short movie reviews of an asked sentiment (control codes), for demos and data "
        "augmentation experiments. Its text is invented: not facts about real films or people.",
        "",
        "## Model",
        f"Fine-tuned from `{facts['base_model']}`; run `{facts['run_id']}`.",
        "",
        "## Quality (scored by the pipeline's classifier)",
        *_table(
            ("metric", "value"),
            [
                (key.replace("_", " "), _num(quality[key]))
                for key in ("control_accuracy", "distinct_1", "distinct_2", "perplexity_before", "perplexity_after")
                if isinstance(quality.get(key), int | float)
            ],
        ),
    ]
    samples = report.get("samples", [])[:3]
    if samples:
        lines += ["", "## Samples"]
        lines += [f"- *{s.get('sentiment', '?')}*: {str(s.get('text', '')).strip()[:300]}" for s in samples]
    return "\n".join(lines) + "\n"


def as_description(card: str) -> str:
    """The card cut to what a version's description holds, pointing at the full artifact."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    note = f"\n\n(cut here: the whole card is the run's artifact `{CARD_ARTIFACT}`)\n"
    return card[: DESCRIPTION_LIMIT - len(note)].rsplit("\n", 1)[0] + note
