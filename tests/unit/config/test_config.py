from pathlib import Path

import pytest

from helpers import REPO_ROOT
from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config import Params, load_params, validate_params


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_are_the_real_experiment():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.source == "stanfordnlp/imdb"
    assert params.model.name == "distilbert-base-uncased"
    assert params.data.max_samples.train is None and params.data.max_samples.test is None
    assert params.train.learning_rate == pytest.approx(5e-5)


def test_profiles_validate_against_the_same_model():
    base = load_params(REPO_ROOT / "params.yaml").model_dump()
    for profile in (REPO_ROOT / "profiles").glob("*.yaml"):
        overlay = load_params(profile).model_dump(exclude_unset=True)
        assert overlay, profile
        merged = {**base, **{k: {**base[k], **v} if isinstance(v, dict) else v for k, v in overlay.items()}}
        validate_params(merged)


def test_empty_file_gives_defaults(tmp_path):
    assert load_params(write(tmp_path, "")) == Params()


def test_yaml_exponent_floats_are_numbers(tmp_path):
    params = load_params(write(tmp_path, "train:\n  learning_rate: 3e-5\n"))
    assert params.train.learning_rate == pytest.approx(3e-5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  learning_rate: -1\n", "train.learning_rate: must be > 0"),
        ("data:\n  sorce: x\n", "data.sorce: unknown key (did you mean 'data.source'?)"),
        ("tokenize:\n  max_length: lots\n", "tokenize.max_length: must be an integer (got 'lots')"),
        ("tokenize:\n  max_length: '256'\n", "tokenize.max_length: must be an integer (got '256')"),
        ("data:\n  clean_html: 1\n", "data.clean_html: must be true or false"),
        (
            "tokenize:\n  truncation: middle\n",
            "tokenize.truncation: must be one of 'head' or 'head_tail' (got 'middle')",
        ),
        ("tokenize:\n  head_share: 1.5\n", "tokenize.head_share: must be < 1 (got 1.5)"),
        ("data:\n  label_map: {neg: 0, pos: 2}\n", "data.label_map: values must be 0 or 1"),
        ("data:\n  max_samples:\n    train: 0\n", "data.max_samples.train: must be >= 2"),
        ("trian:\n  epochs: 1\n", "trian: unknown key (did you mean 'train'?)"),
        ("- a\n- b\n", "must be a mapping"),
        ("data: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_params_name_the_key(tmp_path, text, message):
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "params.yaml"))


def test_all_problems_reported_at_once(tmp_path):
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, "train:\n  epochs: 0\n  learning_rate: 0\n"))
    assert "train.epochs" in str(info.value) and "train.learning_rate" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flat_keys_for_tracking():
    flat = Params().flat()
    assert flat["data.max_samples.train"] is None
    assert flat["model.name"] == "distilbert-base-uncased"
    assert flat["data.label_map"] is None
