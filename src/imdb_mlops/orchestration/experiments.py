"""DVC experiments: the overrides an ``imdb-mlops exp-run`` makes and the ``dvc exp run`` command
that carries them (DVC records the params of each experiment in its own ref)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_mlops.config.overrides import as_yaml_scalar, parse_assignments, resolve_overrides

OFFLINE_GENERATOR_PROFILE = "smollm2-generator"  # no GPT-2 without the hub: the packaged SmolLM2 GGUF instead


def experiment_overrides(
    params_path: Path, profiles: list[str], assignments: list[str], offline: bool, offline_source: str
) -> dict[str, Any]:
    """Profiles, the offline sources (``offline``), then ``KEY=VALUE`` assignments, validated against
    ``params_path`` (nothing written)."""
    from imdb_mlops.modeling.pretrained import PACKAGED_MINILM, packaged_minilm_path

    names = [OFFLINE_GENERATOR_PROFILE, *profiles] if offline else list(profiles)  # first, so profiles can adjust it
    explicit: dict[str, Any] = {}
    if offline:
        packaged_minilm_path()  # installed? (a one-line error otherwise)
        explicit.update(
            {"data.source": offline_source, "model.name": PACKAGED_MINILM}
        )  # portable: no path of this machine
    explicit.update(parse_assignments(assignments))
    merged, _ = resolve_overrides(params_path.parent, explicit, names, "--profile")
    return merged


def exp_run_command(
    overrides: dict[str, Any], name: str | None = None, temp: bool = False, targets: tuple[str, ...] = ()
) -> list[str]:
    """``dvc exp run [--temp] [--name NAME] -S key=value ... [TARGET ...]``."""
    command = ["dvc", "exp", "run"] + (["--temp"] if temp else [])
    if name:
        command += ["--name", name]
    for key, value in overrides.items():
        command += ["-S", f"{key}={as_yaml_scalar(value)}"]
    return command + list(targets)
