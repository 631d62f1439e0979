"""Reading ``params.yaml`` (and profile overlays) into :class:`~imdb_mlops.config.schema.Params`.

A bad file fails with one line naming the key path, e.g.
``params.yaml: train.learning_rate: must be > 0 (got -1)``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config.schema import Params

DEFAULT_PARAMS_PATH = Path("params.yaml")
PROFILES_DIR = Path("profiles")  # params overlays (profiles/NAME.yaml)


MAX_PARAMS_BYTES = 1024**2  # a params file is a few KB; anything near this is not one


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads ``5e-5`` as a float (YAML 1.2), not as the string '5e-5', and refuses
    aliases (``*name``): a params file needs none, and nested aliases expand exponentially (a
    "billion laughs" file would take minutes and gigabytes to load)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in params files", event.start_mark
            )
        return super().compose_node(parent, index)


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a folder; expected a params YAML file (e.g. params.yaml)") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(text) > MAX_PARAMS_BYTES:
        raise ParamsError(f"{path}: {len(text):,} characters; a params file is at most {MAX_PARAMS_BYTES:,}")
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_params(path: Path | str = DEFAULT_PARAMS_PATH) -> Params:
    """Read and validate params.yaml; raise :class:`ParamsError` with a one-line message."""
    path = Path(path)
    tree = read_yaml(path)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: must be a mapping of sections, got {type(tree).__name__}")
    return validate_params(tree, source=str(path))


def validate_params(tree: dict[str, Any], source: str = "params") -> Params:
    try:
        return Params.model_validate(tree)
    except ValidationError as exc:
        problems = [_describe(err, tree) for err in exc.errors()]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _describe(err: dict[str, Any], tree: dict[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    kind = err["type"]
    ctx = err.get("ctx", {})
    given = err.get("input")
    path = ".".join(loc) if loc else "(top level)"
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        suggestion = f" (did you mean '{'.'.join([*loc[:-1], hint[0]])}'?)" if hint else ""
        return f"{path}: unknown key{suggestion}"
    if kind in _TYPE_NAMES:
        return f"{path}: must be {_TYPE_NAMES[kind]} (got {given!r})"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"{path}: must be {bounds[kind]} {limit} (got {given!r})"
    if kind == "literal_error":
        return f"{path}: must be one of {ctx.get('expected')} (got {given!r})"
    if kind == "string_too_short":
        return f"{path}: must not be empty"
    if kind == "value_error":
        return f"{path}: {ctx.get('error')}"
    return f"{path}: {err['msg']} (got {given!r})"


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
