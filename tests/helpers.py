"""Helpers shared by the tests: synthetic reviews, tiny models saved like real checkpoints, fresh
copies of the repository, the CLI in a subprocess. Imported as ``helpers`` (tests/ is on the path)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_mlops.common.processes import tools_first_env

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_IMDB = REPO_ROOT.parent / "shared" / "imdb"

POSITIVE_WORDS = ["great", "wonderful", "moving", "brilliant", "superb", "delightful", "funny", "charming"]
NEGATIVE_WORDS = ["awful", "boring", "dull", "terrible", "clumsy", "tedious", "weak", "lifeless"]
FILLER = ["the", "film", "plot", "actor", "scene", "story", "camera", "music", "ending", "script"]


def make_reviews(n: int, seed: int = 0, prefix: str = "") -> pd.DataFrame:
    """``n`` distinct synthetic reviews, balanced labels, with an IMDB-like star rating."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = POSITIVE_WORDS if label else NEGATIVE_WORDS
        body = " ".join(rng.choice(FILLER + words) for _ in range(rng.randint(8, 60)))
        rating = rng.randint(7, 10) if label else rng.randint(1, 4)
        rows.append(
            {"text": f"{prefix}review {i}: {body}<br /><br />{rng.choice(words)}.", "label": label, "rating": rating}
        )
    return pd.DataFrame(rows)


def write_hub_layout(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """A folder laid out like the hub's stanfordnlp/imdb parquet export."""
    (root / "plain_text").mkdir(parents=True)
    make_reviews(n_train, seed=1, prefix="tr ").to_parquet(root / "plain_text" / "train-00000-of-00001.parquet")
    make_reviews(n_test, seed=2, prefix="te ").to_parquet(root / "plain_text" / "test-00000-of-00001.parquet")
    return root


def cli_env(**extra: str) -> dict[str, str]:
    env = tools_first_env()  # the venv's dvc and imdb-mlops, as the commands themselves run them
    env.update({"DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    # an `mlflow server` otherwise starts MLflow's job runner: 7 huey consumers that took most of a
    # core while idle here; no test uses MLflow jobs (webhooks are delivered by the server's threads)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imdb_mlops", *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True
    )


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=cli_env(**env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# Runs `imdb-mlops <KILL_ARGV>` and SIGKILLs itself just before its KILL_AT-th rename of an output
# (common/files.py swaps outputs by renames only: old -> backup, new -> place, per output).
KILL_AT_RENAME = """
import json, os, runpy, signal, sys
import imdb_mlops.common.files as files
calls, real = 0, os.replace
def replace(src, dst):
    global calls
    calls += 1
    if calls == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
files.os.replace = replace
sys.argv = ["imdb-mlops", *json.loads(os.environ["KILL_ARGV"])]
runpy.run_module("imdb_mlops", run_name="__main__")
"""


def run_cli_killed_at_rename(args: list[str], kill_at: int, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``imdb-mlops *args`` killed (SIGKILL) right before its ``kill_at``-th rename."""
    import json

    extra = {"KILL_AT": str(kill_at), "KILL_ARGV": json.dumps(args), **env}
    return subprocess.run(
        [sys.executable, "-c", KILL_AT_RENAME], cwd=cwd, env=cli_env(**extra), capture_output=True, text=True
    )


def processes_with_env(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (a stage's workers left behind)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


_EMPTY_STORE: list[Path] = []  # this test process's empty MLflow store, made once


def new_mlflow_store(folder: Path, name: str = "mlflow.db") -> str:
    """The URI of a new, empty MLflow SQLite store ``folder / name``, its default experiment's
    artifacts in ``folder / "mlruns/0"`` (as MLflow makes it for a process working in ``folder``).
    MLflow makes a store by running every schema migration, 2.5 s here; tests that each need a fresh
    one get a copy of a store MLflow made once in this process (the same tables and rows)."""
    import atexit
    import sqlite3
    import tempfile
    import time

    from mlflow import MlflowClient

    if not _EMPTY_STORE:
        made = Path(tempfile.mkdtemp(prefix="empty-mlflow-store-")) / "mlflow.db"
        atexit.register(shutil.rmtree, made.parent, ignore_errors=True)  # left in /tmp by no test process
        MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()  # MLflow creates the tables
        _EMPTY_STORE.append(made)
    db = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_EMPTY_STORE[0], db)
    now = int(time.time() * 1000)
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
            "WHERE experiment_id = 0",
            (str(folder / "mlruns" / "0"), now, now),
        )
    connection.close()
    return f"sqlite:///{db}"


def sqlite_registry(folder: Path, model: str) -> Any:
    """An MlflowClient on a fresh SQLite store in ``folder`` holding the registered model ``model``."""
    from mlflow import MlflowClient

    uri = new_mlflow_store(folder)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(model)
    return client


PACKAGED_CLASSIFIER = "pkg:tiny_checkpoint_pkg/model"
PACKAGED_GENERATOR = "pkg:tiny_checkpoint_pkg/generator"
# MLflow's system metrics sampled every second, so a short stage still logs some
FAST_SYSTEM_METRICS = {
    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1",
    "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1",
}


def install_tiny_checkpoint_package(site: Path, tokenizer_dir: Path, generator: Path | None = None) -> None:
    """Tiny checkpoints shipped as an installed package (module, data folders, dist-info) in ``site``,
    as the packaged MiniLM and SmolLM2 are, but seconds to train and export: a classifier
    (:data:`PACKAGED_CLASSIFIER`) and, given ``generator``, a copy of it (:data:`PACKAGED_GENERATOR`)."""
    save_tiny_distilbert(site / "tiny_checkpoint_pkg" / "model", tokenizer_dir, classifier_labels=2)
    if generator is not None:
        shutil.copytree(generator, site / "tiny_checkpoint_pkg" / "generator")
    (site / "tiny_checkpoint_pkg" / "__init__.py").write_text("")
    info = site / "tiny_checkpoint_pkg-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-checkpoint-pkg\nVersion: 0.1.0\n")


def experiment_env(project: Path) -> dict[str, str]:
    """What every command in a project made by the ``dvc_experiment`` fixture needs: the project's own
    MLflow store, the packaged checkpoints on ``PYTHONPATH`` (as site-packages is), fast system metrics."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        "PYTHONPATH": str(project.parent / "site"),
        **FAST_SYSTEM_METRICS,
    }


def make_project_copy(tmp_path: Path, mlflow_store: bool = True) -> Path:
    """A fresh git + DVC checkout of this repository's tracked files, with its own DVC remote and
    (``mlflow_store``) a new, empty MLflow store where the project's default URI points."""
    dest = tmp_path / "project"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@localhost"], dest)
    run(["git", "config", "user.name", "test"], dest)
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(tmp_path / "remote")], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy"], dest)
    if mlflow_store:
        new_mlflow_store(dest)  # git-ignored
    return dest


def save_tiny_distilbert(folder: Path, tokenizer_dir: Path, classifier_labels: int | None = None, **config) -> Path:
    """A tiny DistilBERT built from a config, saved like a real checkpoint (with a tokenizer)."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    torch.manual_seed(0)  # the same tiny weights in every run
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    settings = {"vocab_size": len(tokenizer), "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    settings.update(config)
    if classifier_labels:
        model = DistilBertForSequenceClassification(DistilBertConfig(num_labels=classifier_labels, **settings))
    else:
        model = DistilBertModel(DistilBertConfig(**settings))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path, n_positions: int = 256, **config) -> Path:
    """A tiny GPT-2 built from a config with a small byte-level BPE vocabulary (learned from
    synthetic reviews), saved like a real checkpoint: weights as safetensors, tokenizer beside them."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = tiny_bpe_tokenizer()
    settings = {
        "vocab_size": len(tokenizer),
        "n_positions": n_positions,
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 2,
        "bos_token_id": tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    settings.update(config)
    GPT2LMHeadModel(GPT2Config(**settings)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_bpe_tokenizer() -> Any:
    """A byte-level BPE vocabulary of 400 tokens learned from synthetic reviews (eos: <|endoftext|>)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    texts = make_reviews(400, seed=7)["text"].tolist()
    bpe.train_from_iterator(
        texts, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
    )
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, unk_token=eos)


TINY_LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 128, "rope_theta": 10000.0}  # fmt: skip


def tiny_llama(**config: Any) -> tuple[Any, Any]:
    """A tiny Llama (rotary positions, grouped-query attention: 4 query heads, 2 key/value heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = tiny_bpe_tokenizer()
    eos = tokenizer.eos_token_id
    settings = {**TINY_LLAMA, "vocab_size": len(tokenizer), "bos_token_id": eos, "eos_token_id": eos,
                "tie_word_embeddings": True, **config}  # fmt: skip
    return LlamaForCausalLM(LlamaConfig(**settings)), tokenizer


def save_tiny_llama(folder: Path, **config: Any) -> Path:
    """The tiny Llama saved like a real checkpoint: safetensors with its tokenizer beside them."""
    model, tokenizer = tiny_llama(**config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_llama_gguf(path: Path, architecture: str = "llama") -> Path:
    """The tiny Llama written as a GGUF file with the ``gguf`` package's writer, the way llama.cpp's
    converter lays it out: float32 tensors under GGUF names, q/k rows permuted for its rotary
    layout, the BPE vocabulary and merges in the header. transformers reads it back to the same model."""
    import gguf
    import numpy as np

    model, tokenizer = tiny_llama()
    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads

    def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
        return (
            weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape)
        )

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(tokenizer))
    writer.add_rope_dimension_count(cfg.hidden_size // heads)
    writer.add_tokenizer_model("gpt2")
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token == tokenizer.eos_token else 1 for token, _ in vocab])
    merges = json_merges(tokenizer)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.eos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_bos_token(False)
    names = {
        "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "gate_proj": "ffn_gate",
        "up_proj": "ffn_up", "down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }  # fmt: skip
    for name, tensor in model.state_dict().items():
        data = tensor.float().numpy()
        if name == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", data)
        elif name == "model.norm.weight":
            writer.add_tensor("output_norm.weight", data)
        elif name.startswith("model.layers."):
            parts = name.split(".")  # model.layers.<i>[.self_attn|.mlp].<part>.weight
            index, key = parts[2], names[parts[-2]]
            if key == "attn_q":
                data = permute(data, heads)
            elif key == "attn_k":
                data = permute(data, kv_heads)
            writer.add_tensor(f"blk.{index}.{key}.weight", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def json_merges(tokenizer: Any) -> list[str]:
    """The BPE merges of a fast tokenizer as ``"a b"`` strings."""
    import json

    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    return [" ".join(m) if isinstance(m, list) else m for m in merges]


TINY_GENERATION_PARAMS = {
    "generation.finetune.max_steps": 6,
    "generation.finetune.train_samples": 64,
    "generation.finetune.block_size": 64,
    "generation.finetune.logging_steps": 2,
    "generation.finetune.learning_rate": 3e-3,
    "generation.samples_per_sentiment": 4,
    "generation.perplexity_samples": 16,
    "generation.decoding.max_new_tokens": 12,
    "generation.decoding.batch_size": 4,
}


def tiny_generation_params(**extra: Any) -> Any:
    """Validated params: the defaults with TINY_GENERATION_PARAMS and ``extra`` (dotted keys) on top."""
    from imdb_mlops.config import validate_params
    from imdb_mlops.config.overrides import set_dotted

    tree: dict = {}
    for key, value in {**TINY_GENERATION_PARAMS, **extra}.items():
        set_dotted(tree, key, value)
    return validate_params(tree)


TINY_PIPELINE_PARAMS = {
    "tokenize.max_length": 64,
    "train.max_steps": 60,
    "train.eval_strategy": "steps",
    "train.eval_steps": 30,
    "train.logging_steps": 10,
    "train.learning_rate": 2e-3,
    "evaluate.bootstrap_samples": 200,
    "tracking.system_metrics": False,
    "export.latency_samples": 8,
    # The PyTorch bf16 variant is exercised by the export, runtimes and register tests; here every pyfunc
    # load in a CLI subprocess would import transformers for it.
    "export.torch_bf16": False,
    "registry.behaviour_min_pass": None,  # tiny models of synthetic reviews know no English
}


def set_params(project: Path, **dotted: object) -> None:
    """Edit a project's params.yaml (dotted keys) and check it still validates."""
    import yaml

    from imdb_mlops.config import load_params

    path = project / "params.yaml"
    tree = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node[leaf] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    load_params(path)
