from pathlib import Path

import pytest

from helpers import REPO_ROOT
from imdb_mlops.common.errors import ParamsError
from imdb_mlops.config import Params, load_params


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


def test_profiles_validate_against_the_same_model_on_every_machine_kind():
    from imdb_mlops.config.overrides import profile_overrides, with_overrides
    from imdb_mlops.modeling.capabilities import MACHINE_KINDS

    for profile in (REPO_ROOT / "profiles").glob("*.yaml"):
        for kind in MACHINE_KINDS:
            overrides = profile_overrides(REPO_ROOT, [profile.stem], kind=kind)
            assert overrides, profile
            with_overrides(REPO_ROOT / "params.yaml", overrides)


MACHINE_PROFILE = """
train: {epochs: 1}
machines:
  cpu-bf16: {expected_minutes: 12, params: {train: {precision: bf16}}}
  cpu-avx2: {expected_minutes: 20, params: {train: {epochs: 2}, generation: {finetune: {method: lora}}}}
"""


def test_a_profile_sizes_its_work_by_machine_kind(tmp_path):
    from imdb_mlops.config.overrides import expected_minutes, profile_overrides

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "quick.yaml").write_text(MACHINE_PROFILE)
    assert profile_overrides(tmp_path, ["quick"], kind="cpu-bf16") == {"train.epochs": 1, "train.precision": "bf16"}
    avx2 = profile_overrides(tmp_path, ["quick"], kind="cpu-avx2")
    assert avx2 == {"train.epochs": 2, "generation.finetune.method": "lora"}
    assert profile_overrides(tmp_path, ["quick"], kind="gpu") == {"train.epochs": 1}  # no entry: the profile alone
    assert expected_minutes(tmp_path, ["quick"], kind="cpu-avx2") == 20
    assert expected_minutes(tmp_path, ["quick"], kind="gpu") is None


def test_a_profile_with_an_unknown_machine_kind_is_refused(tmp_path):
    from imdb_mlops.common.errors import ParamsError
    from imdb_mlops.config.overrides import profile_overrides

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "quick.yaml").write_text("machines: {cpu-avx3: {params: {}}}\n")
    with pytest.raises(ParamsError, match=r"quick.yaml: machines must map machine kinds \(gpu, cpu-bf16"):
        profile_overrides(tmp_path, ["quick"], kind="gpu")


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


def test_a_yaml_alias_bomb_is_refused_at_once_not_expanded(tmp_path):
    """Billion laughs: nine levels of nine aliases would expand to 10^9 strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines += ["evaluate:", f"  length_buckets: [{', '.join(['*a8'] * 9)}]"]
    (tmp_path / "params.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ParamsError, match=r"params.yaml: line 2: not valid YAML \(aliases \(\*a0\) are not allowed"):
        load_params(tmp_path / "params.yaml")


def test_an_oversized_params_file_is_refused_before_parsing(tmp_path):
    (tmp_path / "params.yaml").write_text("# " + "x" * (2 * 1024**2) + "\n")
    with pytest.raises(ParamsError, match=r"params.yaml: 2,097,155 characters; a params file is at most 1,048,576"):
        load_params(tmp_path / "params.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flat_keys_for_tracking():
    flat = Params().flat()
    assert flat["data.max_samples.train"] is None
    assert flat["model.name"] == "distilbert-base-uncased"
    assert flat["data.label_map"] is None
