"""``dvc.yaml`` read as plain YAML, where opening DVC's own index would cost more than the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_stages(project: Path) -> dict[str, dict[str, Any]]:
    """The ``stages`` of ``project/dvc.yaml`` by name; {} where the file is missing or holds no pipeline."""
    try:
        stages = (yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    if not isinstance(stages, dict):
        return {}
    return {name: spec for name, spec in stages.items() if isinstance(spec, dict)}
