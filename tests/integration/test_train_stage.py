"""The train stage on a tiny DistilBERT built from a config: tracking, resume, determinism, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO_ROOT, cli_env, new_mlflow_store, save_tiny_distilbert, write_hub_layout
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import Params, validate_params
from imdb_mlops.modeling.capabilities import detect
from imdb_mlops.modeling.finetuning import out_of_memory_error
from imdb_mlops.stages.ingest import ingest
from imdb_mlops.stages.tokenize import tokenize
from imdb_mlops.stages.train import train

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="train")]

TINY_TRAIN = {
    "max_steps": 12,
    "eval_strategy": "steps",
    "eval_steps": 6,
    "logging_steps": 2,
    "learning_rate": 1e-3,
    "per_device_train_batch_size": 8,
    "early_stopping_patience": 0,
}


def make_params(model: Path | str, source: Path, **train) -> Params:
    tree = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    tree["data"]["source"] = str(source)
    tree["model"]["name"] = str(model)
    tree["tokenize"]["max_length"] = 48
    tree["tracking"]["system_metrics"] = False
    tree["train"].update({**TINY_TRAIN, **train})
    return validate_params(tree)


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_distilbert):
    """A project folder with ingested and tokenized synthetic reviews and its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path))
    params = make_params(tiny_distilbert, write_hub_layout(tmp_path / "imdb", 160, 80))
    ingest(params, Path("data/raw"), Path("reports/data.json"))
    tokenize(params, Path("data/raw"), Path("data/tokenized"), Path("reports/tokenize.json"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(), sort_keys=False))
    return tmp_path


def run_train(params: Params, tag: str = "") -> dict:
    return train(
        params, Path("data/tokenized"), Path("data/raw"), Path(f"models/classifier{tag}"), Path(f"reports{tag}")
    )


def test_outputs_are_safetensors_with_named_labels(workdir, tiny_distilbert):
    params = make_params(tiny_distilbert, workdir / "imdb")
    summary = run_train(params)
    model_dir = workdir / "models" / "classifier"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()
    assert not list(model_dir.glob("*.bin")) and not list(model_dir.glob("*.pt"))
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert summary["global_step"] == 12 and summary["device"] == "cpu"
    assert summary["precision"] == ("bf16" if detect().cpu_bf16 else "fp32")  # auto: native bf16 where the CPU has it
    history = json.loads((workdir / "reports" / "train_history.json").read_text())
    assert [r["step"] for r in history["validation"]] == [6, 12]
    assert all({"loss", "learning_rate", "grad_norm"} <= set(r) for r in history["train"])
    assert (workdir / "reports" / "figures" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (workdir / "models" / "checkpoints").exists() or not any((workdir / "models" / "checkpoints").iterdir())


def test_frozen_layers_keep_the_pretrained_bottom_and_save_every_weight_as_safetensors(workdir, tiny_distilbert):
    """train.frozen_layers: 1 on a 2-layer model: the saved checkpoint (plain safetensors, loaded as
    the served model loads it) holds the pretrained embeddings and layer 0 bit for bit, a trained
    layer 1, and the report counts the weights that trained."""
    from safetensors.torch import load_file

    from imdb_mlops.modeling.classifier import load_trained_classifier

    summary = run_train(make_params(tiny_distilbert, workdir / "imdb", frozen_layers=1))
    pretrained = load_file(tiny_distilbert / "model.safetensors")
    trained = {
        k.removeprefix("distilbert."): v for k, v in load_file(workdir / "models/classifier/model.safetensors").items()
    }
    bottom = [k for k in pretrained if k.startswith(("embeddings.", "transformer.layer.0."))]
    top = [k for k in pretrained if k.startswith("transformer.layer.1.") and k.endswith("weight")]
    assert bottom and top
    assert all(torch.equal(pretrained[k], trained[k]) for k in bottom)
    assert all(not torch.equal(pretrained[k], trained[k]) for k in top)
    frozen = sum(pretrained[k].numel() for k in bottom)
    assert summary["trainable_parameters"] == summary["parameters"] - frozen
    model, tokenizer = load_trained_classifier(workdir / "models" / "classifier")
    assert model(**tokenizer(["a fine film"], return_tensors="pt")).logits.shape == (1, 2)


def test_same_params_same_metrics_on_cpu(workdir, tiny_distilbert):
    params = make_params(tiny_distilbert, workdir / "imdb")
    first = run_train(params, "-a")
    second = run_train(params, "-b")
    assert first["validation"] == second["validation"]
    a = (workdir / "models" / "classifier-a" / "model.safetensors").read_bytes()
    assert a == (workdir / "models" / "classifier-b" / "model.safetensors").read_bytes()


def test_killed_run_resumes_from_its_last_checkpoint(workdir, minilm_path):
    import mlflow

    slow_model = save_tiny_distilbert(workdir / "slower", minilm_path, dim=128, n_layers=4, hidden_dim=256)
    tree = yaml.safe_load(Path("params.yaml").read_text())
    tree["model"]["name"] = str(slow_model)
    tree["train"].update(max_steps=120, eval_steps=10, save_total_limit=3)
    Path("params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    # same tokenizer as the tokenized data, so no re-tokenizing is needed
    command = [sys.executable, "-m", "imdb_mlops", "train"]
    env = cli_env(MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"])
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    checkpoints = workdir / "models" / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        done = [
            c
            for c in checkpoints.glob("*/checkpoint-*")
            if (c / "scheduler.pt").exists() and (c / "trainer_state.json").exists()
        ]
        if done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_file = next(checkpoints.glob("*/mlflow_run.json"))
    killed_run = json.loads(run_file.read_text())["run_id"]
    assert not (workdir / "models" / "classifier").exists()  # nothing half-written

    again = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" in again.stderr
    summary = json.loads((workdir / "reports" / "train_metrics.json").read_text())
    assert summary["resumed"] is True and summary["global_step"] == 120
    assert json.loads((workdir / "reports" / "train_run.json").read_text())["run_id"] == killed_run
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(killed_run)
    assert run.info.status == "FINISHED" and "resumed_from" in run.data.tags
    steps = [m.step for m in client.get_metric_history(killed_run, "loss")]
    assert steps[0] < 10 and steps[-1] == 120


def test_batch_that_does_not_fit_memory_names_the_param():
    try:
        torch.empty(2**62, dtype=torch.uint8)  # a real allocation failure from torch
    except RuntimeError as exc:
        error = out_of_memory_error(exc, 4096, "cpu")
    assert isinstance(error, PipelineError)
    assert str(error).startswith("train.per_device_train_batch_size: 4096 does not fit in cpu memory")
    other = RuntimeError("shape mismatch")
    assert out_of_memory_error(other, 8, "cpu") is other


def test_fp16_on_cpu_is_refused(workdir, tiny_distilbert):
    params = make_params(tiny_distilbert, workdir / "imdb", precision="fp16")
    with pytest.raises(PipelineError, match="train.precision: fp16 needs a GPU"):
        run_train(params)


@pytest.mark.parametrize("case", ["missing", "no_config", "bad_config", "three_labels", "small_vocab"])
def test_bad_checkpoints_are_clear_errors(workdir, minilm_path, case):
    folder = workdir / "ckpt"
    if case == "missing":
        folder = "./no-such-checkpoint"  # a string: Path() would drop the "./"
        expected = "model.name: path './no-such-checkpoint' does not exist"
    elif case == "no_config":
        save_tiny_distilbert(folder, minilm_path)
        (folder / "config.json").unlink()
        expected = "has no config.json; not a transformers checkpoint folder"
    elif case == "bad_config":
        save_tiny_distilbert(folder, minilm_path)
        (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
        expected = "has an unusable config.json"
    elif case == "three_labels":
        save_tiny_distilbert(folder, minilm_path, classifier_labels=3)
        expected = "is a classifier with 3 labels"
    else:
        save_tiny_distilbert(folder, minilm_path, vocab_size=100)
        expected = "tokenizer has 30522 tokens but the model's embedding table has 100"
    with pytest.raises(PipelineError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        run_train(make_params(folder, workdir / "imdb"))
    assert not (workdir / "models" / "classifier").exists()


def test_tokenized_data_from_another_tokenizer_is_refused(workdir, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        ["a small corpus of words"] * 10,
        trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"]),
    )
    other = tmp_path / "other-model"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]"
    )
    tokenizer.save_pretrained(other)
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(
        DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    ).save_pretrained(other)
    with pytest.raises(
        PipelineError, match=r"data/tokenized: token ids were made by the tokenizer of .* not by model.name"
    ):
        run_train(make_params(other, workdir / "imdb"))


def test_unreachable_tracking_server_fails_fast_and_registers_nothing(workdir, tiny_distilbert, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(PipelineError, match=r"MLFLOW_TRACKING_URI: tracking server http://127.0.0.1:9 is unreachable"):
        run_train(make_params(tiny_distilbert, workdir / "imdb"))
    assert time.monotonic() - started < 60
    assert not (workdir / "models" / "classifier").exists() and not (workdir / "reports" / "train_run.json").exists()


def test_two_process_ddp_run_shards_data_and_only_rank_0_tracks_and_writes(workdir, tiny_distilbert):
    """torchrun with two CPU processes (gloo): each sees half of every epoch, rank 0 alone opens the
    MLflow run and writes the outputs, and validation metrics stay within 0.05 accuracy / 0.1 loss
    of a one-process run with the same global batch (16 = 2 x 8) and the same data."""
    settings = {
        "max_steps": -1,
        "epochs": 4,
        "learning_rate": 3e-3,
        "eval_strategy": "epoch",
        "delete_checkpoints": False,
    }
    single = make_params(tiny_distilbert, workdir / "imdb", per_device_train_batch_size=16, **settings)
    ddp = make_params(tiny_distilbert, workdir / "imdb", per_device_train_batch_size=8, **settings)
    (workdir / "single.yaml").write_text(yaml.safe_dump(single.model_dump(), sort_keys=False))
    (workdir / "ddp.yaml").write_text(yaml.safe_dump(ddp.model_dump(), sort_keys=False))
    common = ["train", "--tokenized", "data/tokenized", "--raw", "data/raw"]
    env = cli_env(OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "imdb_mlops", *common, "-p", "single.yaml", "--model-dir", "models/single",
                          "--reports", "reports_single"], cwd=workdir, env=env, capture_output=True, text=True)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    env["MLFLOW_TRACKING_URI"] = new_mlflow_store(workdir, "ddp.db")  # its own store: count its runs
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29531", "--no-python", "imdb-mlops", *common,
                          "-p", "ddp.yaml", "--model-dir", "models/ddp", "--reports", "reports_ddp"],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]

    single_summary = json.loads((workdir / "reports_single" / "train_metrics.json").read_text())
    ddp_summary = json.loads((workdir / "reports_ddp" / "train_metrics.json").read_text())
    assert ddp_summary["world_size"] == 2 and single_summary["world_size"] == 1
    # each rank saw half of each epoch: 2 x 8 reviews per step, as many steps as one process at 16
    assert ddp_summary["global_step"] == single_summary["global_step"]
    assert ddp_summary["epochs_completed"] == single_summary["epochs_completed"] == 4
    for key, tolerance in (("accuracy", 0.05), ("loss", 0.1)):
        assert abs(ddp_summary["validation"][key] - single_summary["validation"][key]) <= tolerance, key
    # one writer: one model, one set of checkpoints, one MLflow run
    assert (workdir / "models" / "ddp" / "model.safetensors").is_file()
    assert not list((workdir / "models").glob(".ddp.*")) and not list(workdir.glob(".reports_ddp*"))
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].data.tags["world_size"] == "2"
    checkpoints = [p for p in (workdir / "models" / "checkpoints").glob("*/checkpoint-*")]
    assert {p.name for p in checkpoints} >= {f"checkpoint-{ddp_summary['global_step']}"}
    final = next(
        p
        for p in checkpoints
        if p.name == f"checkpoint-{ddp_summary['global_step']}" and (p / "rng_state_1.pth").exists()
    )
    assert len(list(final.glob("model.safetensors"))) == 1  # written once, by rank 0 (each rank keeps its RNG state)
