"""The generate stage on a tiny GPT-2 and a tiny classifier built from configs: fine-tuning,
generation, scoring, the MLflow run and registry, the `generate` command, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import REPO_ROOT, TINY_GENERATION_PARAMS, make_reviews, set_params
from helpers import run_cli as run_cli_in
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import Params, validate_params
from imdb_mlops.config.overrides import set_dotted
from imdb_mlops.modeling.textgen import CONTROL_CODES
from imdb_mlops.stages.generate import score_texts

pytestmark = pytest.mark.xdist_group(name="generation")  # one xdist worker runs this module (module fixtures)

STAGE_ARGS = (
    "build-generator", "--raw", "data/raw", "--classifier", "models/classifier", "--out", "models/generator",
    "--report", "reports/generation.json", "--samples", "reports/generated.jsonl", "--run-file", "reports/train_run.json",
)  # fmt: skip


def run_cli(*args: str, cwd: Path, **env: str):
    """The CLI in ``cwd`` against the project's own MLflow store, whatever another test left in os.environ."""
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlflow.db'}")
    return run_cli_in(*args, cwd=cwd, **env)


def tiny_params(**extra: object) -> Params:
    tree: dict = {}
    for key, value in {**TINY_GENERATION_PARAMS, "tokenize.max_length": 64, **extra}.items():
        set_dotted(tree, key, value)
    return validate_params(tree)


def make_project(root: Path, tiny_gpt2: Path, classifier: Path, **extra: object) -> Path:
    """data/raw, a trained-classifier folder and params.yaml pointing at the tiny GPT-2 (``extra``:
    more dotted params)."""
    (root / "data" / "raw").mkdir(parents=True)
    make_reviews(200, seed=1).to_parquet(root / "data" / "raw" / "train.parquet")
    make_reviews(40, seed=2).to_parquet(root / "data" / "raw" / "validation.parquet")
    shutil.copytree(classifier, root / "models" / "classifier")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    set_params(root, **{**TINY_GENERATION_PARAMS, "generation.model": str(tiny_gpt2), "tokenize.max_length": 64,
                        "tracking.system_metrics": False, **extra})  # fmt: skip
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_gpt2, tiny_distilbert_classifier) -> Path:
    project = make_project(tmp_path_factory.mktemp("generate"), tiny_gpt2, tiny_distilbert_classifier)
    proc = run_cli(*STAGE_ARGS, cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project


def client_of(project: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


# --- the stage ---------------------------------------------------------------------------


def test_stage_writes_scored_reviews_and_metrics(generated: Path):
    report = json.loads((generated / "reports" / "generation.json").read_text())
    samples = [json.loads(line) for line in (generated / "reports" / "generated.jsonl").read_text().splitlines()]
    assert report["n"] == len(samples) == 2 * TINY_GENERATION_PARAMS["generation.samples_per_sentiment"]
    assert {s["sentiment"] for s in samples} == {"positive", "negative"}
    for sample in samples:
        assert sample["control_code"] == CONTROL_CODES[sample["sentiment"]]
        assert sample["text"].startswith(sample["prompt"])
        assert 0.5 <= sample["classifier_probability"] <= 1.0
        assert sample["on_target"] == (sample["classifier_label"] == sample["sentiment"])
    assert report["control_accuracy"] == pytest.approx(np.mean([s["on_target"] for s in samples]), abs=1e-4)
    for part in ("", "_positive", "_negative"):
        assert (
            report[f"control_accuracy{part}_ci_low"]
            <= report[f"control_accuracy{part}"]
            <= report[f"control_accuracy{part}_ci_high"]
        )
    confident = [s["on_target"] and s["classifier_probability"] >= 0.9 for s in samples]
    assert report["confident_share"] == pytest.approx(np.mean(confident), abs=1e-4)
    assert report["decoding_precision"] in ("bf16", "fp32") and report["guidance_scale"] == 5.0
    assert report["stage_seconds"] >= report["generation_seconds"] >= 0 and report["new_tokens_per_second"] > 0
    assert 0 < report["distinct_1"] <= report["distinct_2"] <= 1
    # a few fine-tuning steps at a high learning rate lower the held-out perplexity
    assert report["training"]["steps"] == TINY_GENERATION_PARAMS["generation.finetune.max_steps"]
    assert report["perplexity_after"] < report["perplexity_before"]
    assert report["new_tokens"] > 0


def test_stage_scores_each_review_as_the_classifier_does_alone(generated: Path, tiny_distilbert_classifier: Path):
    """The label and probability on each line belong to that line's text (no mix-up of order)."""
    from imdb_mlops.modeling.classifier import load_trained_classifier as load_trained

    samples = [json.loads(line) for line in (generated / "reports" / "generated.jsonl").read_text().splitlines()]
    model, tokenizer = load_trained(tiny_distilbert_classifier)
    params = tiny_params()
    for sample in samples[:4]:
        positive = score_texts(params, model, tokenizer, [sample["text"]])[0]
        expected = positive if sample["classifier_label"] == "positive" else 1 - positive
        assert sample["classifier_probability"] == pytest.approx(expected, abs=1e-5)


def test_generator_is_saved_as_safetensors_with_its_control_codes(generated: Path):
    from transformers import AutoTokenizer

    folder = generated / "models" / "generator"
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    for code in CONTROL_CODES.values():
        assert tokenizer.convert_tokens_to_ids(code) != tokenizer.unk_token_id
        assert len(tokenizer(code, add_special_tokens=False)["input_ids"]) == 1


def test_run_holds_params_metrics_and_the_samples_table(generated: Path):
    report = json.loads((generated / "reports" / "generation.json").read_text())
    client = client_of(generated)
    run = client.get_run(report["run_id"])
    assert run.data.params["generation.decoding.top_p"] == "0.95"
    assert run.data.metrics["control_accuracy"] == pytest.approx(report["control_accuracy"])
    assert run.data.metrics["perplexity_after"] == pytest.approx(report["perplexity_after"])
    assert "loss" in run.data.metrics  # the fine-tuning curve
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "generated_samples.json")).read_text())
    assert len(table["data"]) == report["n"] and "classifier_label" in table["columns"]


def test_first_generator_is_champion_and_the_command_prints_its_reviews(generated: Path):
    client = client_of(generated)
    version = client.get_model_version_by_alias("imdb-review-generator", "champion")
    assert str(version.version) == "1" and version.tags["generation_run_id"]
    card = version.description  # the model card
    report = json.loads((generated / "reports" / "generation.json").read_text())
    assert card.startswith("# imdb-review-generator version 1") and "## Samples" in card
    assert f"| control accuracy | {report['control_accuracy']:.4f} |" in card and str(generated) not in card
    args = ("write-reviews", "--sentiment", "positive", "--prompt", "This movie", "-n", "2", "--seed", "11", "--json")
    first = run_cli(*args, cwd=generated)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(rows) == 2 and all(r["text"].startswith("This movie") and r["sentiment"] == "positive" for r in rows)
    # the served model, same request and seed: the same reviews
    again = _load_champion(generated).predict(pd.DataFrame({"prompt": ["This movie"] * 2, "sentiment": ["positive"] * 2}),
                                              params={"seed": 11})  # fmt: skip
    assert again["text"].tolist() == [r["text"] for r in rows]
    table = run_cli("generate", "-s", "negative", cwd=generated)  # the old name, kept for one release
    assert table.returncode == 0 and "negative review 1/3" in table.stdout
    assert "`imdb-mlops generate` is now `imdb-mlops write-reviews`" in table.stderr


def test_write_reviews_command_and_served_generator_refuse_bad_requests(generated: Path):
    unknown = run_cli("write-reviews", "--sentiment", "happy", cwd=generated)
    assert (
        unknown.returncode == 1
        and "--sentiment: 'happy' is unknown (expected one of negative, positive)" in unknown.stderr
    )
    cold = run_cli("write-reviews", "-s", "positive", "--temperature", "0", cwd=generated)
    assert cold.returncode == 1 and "temperature: must be > 0 when strategy is sample" in cold.stderr
    assert "Traceback" not in unknown.stderr + cold.stderr
    # the registered pyfunc itself (what `mlflow models serve` runs), loaded once
    from mlflow.exceptions import MlflowException

    generator = _load_champion(generated)
    rows = pd.DataFrame({"prompt": ["This movie"], "sentiment": ["negative"]})
    for request, params, message in [
        (rows, {"max_new_tokens": 5000}, "max_new_tokens: 5000 new tokens after a prompt of"),
        (rows, {"top_p": 1.5}, "top_p: input should be less than or equal to 1"),
        (rows.assign(sentiment="happy"), {}, "sentiment: 'happy' is unknown"),
        (rows.drop(columns=["sentiment"]), {}, "missing inputs ['sentiment']"),  # MLflow's schema check
    ]:
        with pytest.raises(MlflowException, match=re.escape(message)):
            generator.predict(request, params=params)
    greedy = generator.predict(rows, params={"strategy": "greedy", "max_new_tokens": 6})
    assert greedy["text"][0].startswith("This movie") and greedy["sentiment"][0] == "negative"


def _load_champion(project: Path):
    """The registered generator, loaded in this process (leaves MLflow's global tracking URI as it was)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.pyfunc.load_model("models:/imdb-review-generator@champion")
    finally:
        tracking_utils._tracking_uri = previous


def test_second_run_registers_a_challenger_and_keeps_the_champion(generated: Path):
    set_params(generated, **{"generation.decoding.seed": 7})
    proc = run_cli(*STAGE_ARGS, cwd=generated)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((generated / "reports" / "generation.json").read_text())
    assert report["version"] == 2 and report["aliases"] == ["challenger"]
    assert str(client_of(generated).get_model_version_by_alias("imdb-review-generator", "champion").version) == "1"


# --- bad input ---------------------------------------------------------------------------


def test_max_new_tokens_beyond_the_context_fails_before_any_output(tmp_path, tiny_gpt2, tiny_distilbert_classifier):
    from imdb_mlops.stages.generate import generate

    project = make_project(tmp_path, tiny_gpt2, tiny_distilbert_classifier)
    params = tiny_params(**{"generation.model": str(tiny_gpt2), "generation.decoding.max_new_tokens": 400})
    out = {"out_dir": project / "models" / "generator", "report_path": project / "reports" / "generation.json",
           "samples_path": project / "reports" / "generated.jsonl"}  # fmt: skip
    with pytest.raises(
        PipelineError, match=r"generation.decoding.max_new_tokens: 400 exceeds the context of .* \(256 tokens"
    ):
        generate(params, project / "data" / "raw", project / "models" / "classifier", **out)
    assert not any(path.exists() for path in out.values())


def test_a_gguf_born_llama_is_fine_tuned_registered_served_and_attention_checked(tmp_path, tiny_distilbert_classifier):
    """The stage on a tiny Llama written as a GGUF file, fine-tuned with LoRA as the quick profile does
    (adapters on the top layer and the code rows, merged): saved as plain safetensors (no quantization
    config, no adapter), registered, generated from by the registered pyfunc (what `mlflow models
    serve` runs) and by the `write-reviews` command alike, and its layers recomputed by the reference
    attention."""
    from helpers import save_tiny_llama_gguf

    gguf = save_tiny_llama_gguf(tmp_path / "tiny-llama.F32.gguf")
    lora = {"generation.finetune.method": "lora", "generation.finetune.lora_layers": 1,
            "generation.finetune.learning_rate": 3e-2}  # fmt: skip
    project = make_project(tmp_path / "project", gguf, tiny_distilbert_classifier, **lora)
    proc = run_cli(*STAGE_ARGS, cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = project / "models" / "generator"
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (saved / "model.safetensors").exists() and not list(saved.glob("*.gguf")) and not list(saved.glob("*.bin"))
    assert not list(saved.glob("adapter_*"))
    report = json.loads((project / "reports" / "generation.json").read_text())
    assert report["perplexity_after"] < report["perplexity_before"] and report["n"] == 8
    assert report["training"]["method"] == "lora" and report["training"]["trainable_parameters"] > 0
    args = ("write-reviews", "-s", "negative", "--prompt", "the film", "-n", "2", "--seed", "3", "--json")
    written = run_cli(*args, cwd=project)
    assert written.returncode == 0, written.stderr[-2000:]
    served = _load_champion(project).predict(pd.DataFrame({"prompt": ["the film"] * 2, "sentiment": ["negative"] * 2}),
                                             params={"seed": 3})  # fmt: skip
    assert served["text"].tolist() == [json.loads(line)["text"] for line in written.stdout.splitlines()]
    check = run_cli("attention-check", "the film was great. the acting was superb.", "-m", str(saved), cwd=project)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "llama, causal" in check.stdout and "ok: every layer within 0.0001" in check.stdout
