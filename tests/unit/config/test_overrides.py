"""`-S KEY=VALUE` overrides: read as YAML scalars, with numbers typed as people type them."""

from __future__ import annotations

import pytest
import yaml

from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config.overrides import as_yaml_scalar, parse_assignments


def test_exponent_floats_are_numbers_not_text():
    parsed = parse_assignments(["train.learning_rate=3e-5", "a=1E3", "b=-2.5e+2", "c=.5"])
    assert parsed == {"train.learning_rate": 3e-05, "a": 1000.0, "b": -250.0, "c": 0.5}
    assert all(isinstance(value, float) for value in parsed.values())


def test_quoted_and_other_scalars_keep_their_yaml_meaning():
    parsed = parse_assignments(['x="3e-5"', "y=2", "z=true", "w=text", "v=null", "u="])
    assert parsed == {"x": "3e-5", "y": 2, "z": True, "w": "text", "v": None, "u": ""}


def test_an_assignment_without_equals_is_refused():
    with pytest.raises(ParamsError, match="-S train.epochs: expected KEY=VALUE"):
        parse_assignments(["train.epochs"])


@pytest.mark.parametrize("value", [3e-05, 1e20, 0.5, 2.0, -1.5e-10])
def test_floats_are_written_so_pyyaml_reads_them_back_as_floats(value):
    text = as_yaml_scalar(value)
    assert yaml.safe_load(text) == value and isinstance(yaml.safe_load(text), float), text


def test_a_list_is_written_as_one_that_dvc_and_the_project_both_read_back():
    """A profile's list (export.int8_keep_fp32) goes to `dvc exp run -S` as `[a,b]`: DVC parses -S
    with Hydra's override grammar, the project's own validation with YAML; both get the list back."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    value = ["head", "ffn_output.0", "a b", "3"]
    text = as_yaml_scalar(value)
    assert OverridesParser.create().parse_override(f"export.int8_keep_fp32={text}").value() == value
    assert parse_assignments([f"export.int8_keep_fp32={text}"]) == {"export.int8_keep_fp32": value}
