"""The base of every ``params.yaml`` section, and flattening a tree of them into dotted keys."""

from typing import Any

from pydantic import BaseModel, ConfigDict

# strict: no silent "10" -> 10 or 1 -> True coercions; unknown keys are errors.
SECTION_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True)


class Section(BaseModel):
    model_config = SECTION_CONFIG


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat
