"""Register stage against real MLflow stores: the embedded SQLite store and a real `mlflow server`
on loopback; the promotion gate on a trained and an untrained tiny DistilBERT; idempotency,
promotion, rollback, lineage, the CLI, and `mlflow models serve` answering over HTTP."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from helpers import REPO_ROOT, cli_env, new_mlflow_store, run_cli, save_tiny_distilbert, write_hub_layout
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import Params, validate_params
from imdb_mlops.registry.aliases import rollback
from imdb_mlops.registry.lineage import params_digest
from imdb_mlops.stages.evaluate import evaluate
from imdb_mlops.stages.export import export
from imdb_mlops.stages.ingest import ingest
from imdb_mlops.stages.register import register
from imdb_mlops.stages.tokenize import tokenize
from imdb_mlops.stages.train import train
from servers import free_port, start_logged_server, start_mlflow_server, stop_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="registry")]
MODEL = "imdb-sentiment"


def make_params(model_dir: Path, source: Path, **sections: dict) -> Params:
    tree = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    tree["data"]["source"] = str(source)
    tree["model"]["name"] = str(model_dir)
    tree["tokenize"]["max_length"] = 48
    tree["tracking"]["system_metrics"] = False
    tree["evaluate"]["bootstrap_samples"] = 100
    tree["export"]["latency_samples"] = 8
    tree["registry"]["behaviour_min_pass"] = None  # tiny models of synthetic reviews know no English
    tree["train"].update(
        {
            "eval_strategy": "steps",
            "eval_steps": 40,
            "logging_steps": 10,
            "per_device_train_batch_size": 16,
            "early_stopping_patience": 0,
        }
    )
    for section, values in sections.items():
        tree[section].update(values)
    return validate_params(tree)


def build_candidate(root: Path, params: Params, tag: str) -> dict[str, Path]:
    """Train (real train stage, real MLflow run), evaluate and export one candidate model."""
    paths = {
        "model": root / f"models/{tag}",
        "reports": root / f"reports/{tag}",
        "onnx": root / f"models/onnx-{tag}",
    }
    train(params, root / "data/tokenized", root / "data/raw", paths["model"], paths["reports"])
    evaluate(params, paths["model"], root / "data/tokenized", root / "data/raw", paths["reports"])
    export(params, paths["model"], root / "data/tokenized", paths["onnx"], paths["reports"] / "onnx.json")
    return paths


def register_candidate(root: Path, params: Params, paths: dict[str, Path], report: str = "register.json") -> dict:
    return register(
        params,
        paths["onnx"],
        paths["model"],
        root / "data/raw",
        paths["reports"] / "train_run.json",
        paths["reports"] / "metrics.json",
        paths["reports"] / "onnx.json",
        paths["reports"] / report,
        project_dir=root,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_path):
    """Synthetic reviews; a trained ('strong') and two barely trained ('weak') tiny classifiers."""
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(root))
        base = save_tiny_distilbert(root / "tiny", minilm_path, classifier_labels=2)
        source = write_hub_layout(root / "imdb", 320, 160)
        strong = make_params(base, source, train={"max_steps": 80, "learning_rate": 2e-3})
        weak = make_params(base, source, train={"max_steps": 1, "eval_steps": 1, "learning_rate": 1e-9})
        ingest(strong, root / "data/raw", root / "reports/data.json")
        tokenize(strong, root / "data/raw", root / "data/tokenized", root / "reports/tokenize.json")
        (root / "params.yaml").write_text(yaml.safe_dump(strong.model_dump(), sort_keys=False))
        candidates = {
            "weak": build_candidate(root, weak, "weak"),
            "strong": build_candidate(root, strong, "strong"),
            "weak2": build_candidate(
                root, make_params(base, source, train={"max_steps": 2, "eval_steps": 1, "learning_rate": 1e-9}), "weak2"
            ),
        }
        yield {"root": root, "strong": strong, "weak": weak, "candidates": candidates, "patch": patch}


@pytest.fixture(scope="module")
def client(world):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{world['root'] / 'mlflow.db'}")


def champion(client, name: str = MODEL) -> str:
    return str(client.get_registered_model(name).aliases["champion"])


def test_the_candidates_differ_in_quality(world):
    accuracy = {
        tag: json.loads((paths["reports"] / "metrics.json").read_text())["accuracy"]
        for tag, paths in world["candidates"].items()
    }
    assert accuracy["strong"] >= 0.9 and accuracy["weak"] <= 0.7 and accuracy["weak2"] <= 0.7, accuracy


@pytest.fixture(scope="module")
def registered(world):
    """The three candidates registered in one fixed order, whatever order the tests run in: weak
    (version 1, then registered again), strong (version 2), weak2 (version 3). Each test reads the
    reports; none depends on another having run."""
    root, candidates = world["root"], world["candidates"]
    reports = {"weak": register_candidate(root, world["weak"], candidates["weak"])}
    reports["weak_again"] = register_candidate(root, world["weak"], candidates["weak"], "register-again.json")
    reports["strong"] = register_candidate(root, world["strong"], candidates["strong"])
    reports["weak2"] = register_candidate(root, world["weak"], candidates["weak2"])
    return reports


def test_first_version_becomes_champion_and_a_rerun_adds_no_version(world, registered, client):
    report, again = registered["weak"], registered["weak_again"]
    assert report["version"] == 1 and report["gate"]["action"] == "promoted"
    assert set(report["aliases"]) == {"champion", "challenger"}
    assert again["version"] == 1 and again["gate"]["action"] == "already_registered"
    assert len(client.search_model_versions(f"name='{MODEL}' and run_id='{report['run_id']}'")) == 1
    assert json.loads((world["candidates"]["weak"]["reports"] / "register.json").read_text())["version"] == 1


def test_a_better_challenger_takes_champion(world, registered, client):
    paths = world["candidates"]["strong"]
    report = registered["strong"]
    gate = report["gate"]
    assert report["version"] == 2 and gate["action"] == "promoted", gate
    assert gate["challenger_accuracy"] > gate["champion_accuracy"] and gate["mcnemar_p_value"] < 0.05
    assert gate["n"] == 160 and gate["champion_before"] == 1
    assert report["aliases"] == ["challenger", "champion"]
    version = client.get_model_version(MODEL, "2")
    run_id = json.loads((paths["reports"] / "train_run.json").read_text())["run_id"]
    tags = version.tags
    assert tags["training_run_id"] == run_id and tags["gate.action"] == "promoted"
    assert tags["params_digest"] == params_digest(world["strong"].model_dump())
    assert float(tags["test.accuracy"]) >= 0.9 and float(tags["variant.fp32.agreement"]) == 1.0
    assert tags["git.commit"] and tags["serving.variant"] == "auto" and "fp32" in tags["variants.shipped"].split(",")
    assert "accuracy" in version.description
    run = client.get_run(run_id)
    assert run.data.tags["gate.action"] == "promoted" and run.data.metrics["gate_mcnemar_p_value"] < 0.05
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "pytorch_model" in artifacts
    assert "model.safetensors" in {Path(a.path).name for a in client.list_artifacts(run_id, "pytorch_model")}


def test_the_model_card_is_the_description_and_matches_the_reports(world, registered, client):
    import re

    report, paths = registered["strong"], world["candidates"]["strong"]
    version = client.get_model_version(MODEL, str(report["version"]))
    card = version.description
    for section in ("Intended use and limits", "Training data", "Model", "Test metrics", "Variants",
                    "Behavioural checks", "Promotion", "How to reproduce"):  # fmt: skip
        assert f"## {section}" in card, section
    assert "### Accuracy by length tokens" in card
    assert str(world["root"]) not in card and not re.search(r"[\s`'(]/(tmp|work|home|root|usr)/", card), card
    metrics = json.loads((paths["reports"] / "metrics.json").read_text())
    rows = dict(re.findall(r"^\| (accuracy|f1|roc_auc|precision|recall) \| ([0-9.]+) \|", card, flags=re.M))
    assert rows == {k: f"{metrics[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "roc_auc")}
    low, high = metrics["ci"]["accuracy"]["low"], metrics["ci"]["accuracy"]["high"]
    assert f"| accuracy | {metrics['accuracy']:.4f} | {low:.4f} - {high:.4f} |" in card
    assert "Fine-tuned from `tiny`" in card and "Source `imdb`" in card  # portable names
    tags = version.tags
    assert {"behaviour.mft", "behaviour.invariance", "behaviour.directional", "behaviour.suite_version"} <= set(tags)
    artifact = client.download_artifacts(report["run_id"], "model_card.md", str(world["root"] / "card"))
    assert Path(artifact).read_text() == card  # short enough to be whole in the description


def test_a_worse_challenger_is_not_promoted(registered):
    report = registered["weak2"]
    assert report["version"] == 3 and report["gate"]["action"] == "kept_champion"
    assert report["gate"]["accuracy_gain"] < 0 and "accuracy gain" in report["gate"]["reason"]
    assert report["gate"]["champion"] == 2 and report["aliases"] == ["challenger"]


def test_served_model_matches_pytorch_and_refuses_oversized_requests(world, registered):
    """The pyfunc (ONNX + bundled tokenizer) gives PyTorch's probabilities on raw text."""
    import mlflow
    import pandas as pd
    import torch
    from mlflow.exceptions import MlflowException
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/2")
    texts = pd.read_parquet(world["root"] / "data/raw/test.parquet")["text"].tolist()[:24]
    texts.append(texts[0] * 20)  # longer than max_length: cut head+tail as in training
    served = model.predict(pd.Series(texts))
    assert list(served.columns) == ["label", "probability", "positive_probability"]
    checkpoint = world["candidates"]["strong"]["model"]
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    reference = AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    from imdb_mlops.modeling.encoding import Encoder

    ids = Encoder(tokenizer, world["strong"].tokenize)({"text": texts, "label": [0] * len(texts)})
    expected = []
    with torch.inference_mode():
        for row in ids.column("input_ids").to_pylist():
            logits = reference(torch.tensor([row])).logits
            expected.append(torch.softmax(logits, -1)[0, 1].item())
    expected = np.asarray(expected)
    # The variant the model chose at load (the fastest shipped one here): same labels, close probabilities.
    assert served["label"].tolist() == [["negative", "positive"][int(p >= 0.5)] for p in expected]
    np.testing.assert_allclose(served["positive_probability"].to_numpy(), expected, atol=0.02)
    # The fp32 variant through the same code: tokenization, cutting, padding and softmax match exactly.
    from imdb_mlops.modeling.runtimes import onnx_runner

    inner = model.unwrap_python_model()
    assert inner.choice["variant"] in inner.choice["texts_per_s"] or inner.choice["rule"] == "only usable variant"
    inner.runner = onnx_runner(world["candidates"]["strong"]["onnx"] / "model.fp32.onnx", "fp32", gpu=False)
    np.testing.assert_allclose(inner.positive_probabilities(texts), expected, atol=1e-5)
    with pytest.raises(MlflowException, match="request too large: 300 texts, at most 256"):
        model.predict(pd.Series(["fine"] * 300))
    with pytest.raises(MlflowException, match="text 1 too long: 60,000 characters, at most 50,000"):
        model.predict(pd.Series(["fine", "x" * 60_000]))


def test_cli_lists_promotes_rolls_back_and_shows_lineage(world, registered, client):
    root = world["root"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    listing = run_cli("registry", "versions", cwd=root, **env)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") > 5}
    assert set(lines) == {"1", "2", "3"} and "champion" in lines["2"] and "challenger" in lines["3"]
    assert "kept champion" in lines["3"]

    promoted = run_cli("registry", "promote", "3", cwd=root, **env)
    assert promoted.returncode == 0 and "champion 2 -> 3" in promoted.stdout
    assert champion(client) == "3"
    back = run_cli("registry", "rollback", cwd=root, **env)
    assert back.returncode == 0 and "champion 3 -> 2 (rolled back)" in back.stdout
    assert champion(client) == "2"
    assert rollback(client, MODEL) == ("2", "1") and champion(client) == "1"
    with pytest.raises(PipelineError, match="version 1 has no earlier champion to roll back to; promote"):
        rollback(client, MODEL)
    run_cli("registry", "promote", "2", cwd=root, **env)

    lineage = run_cli("registry", "lineage", "champion", "--json", cwd=root, **env)
    info = json.loads(lineage.stdout)
    assert info["version"] == 2 and "champion" in info["aliases"]
    assert (
        info["training_run_id"]
        == json.loads((world["candidates"]["strong"]["reports"] / "train_run.json").read_text())["run_id"]
    )
    assert info["params"]["train.max_steps"] == "80" and info["tags"]["git.commit"]
    assert {d["name"] for d in info["datasets"]} == {"imdb-train", "imdb-validation", "imdb-test"}

    missing = run_cli("registry", "promote", "9", cwd=root, **env)
    assert missing.returncode == 1
    assert "registry: imdb-sentiment has no version or alias '9' (versions: 1, 2, 3;" in missing.stderr
    serve_missing = run_cli("serve", "-m", "99", cwd=root, **env)  # refused before a server starts
    assert serve_missing.returncode == 1
    assert "registry: imdb-sentiment has no version or alias '99' (versions: 1, 2, 3;" in serve_missing.stderr


def test_cli_predicts_from_arguments_and_files(world, registered, tmp_path):
    root = world["root"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("awful boring dull terrible film\n\nwonderful brilliant superb delightful film\n")
    proc = run_cli("predict", "--file", str(reviews), "-m", "@champion", "--json", cwd=root, **env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["negative", "positive"] and all(0.5 <= r["probability"] <= 1 for r in rows)
    table = run_cli("predict", "a dull and tedious film", "-m", "2", "--verbose", cwd=root, **env)
    assert table.returncode == 0 and "negative" in table.stdout
    # --verbose: the variant the model measured fastest here, among those shipped, and the CPU's flags.
    assert "imdb-mlops classifier: serving the " in table.stderr and "CPU flags" in table.stderr
    chosen = re.search(r"Variant: (\w+) on cpu", table.stderr)
    assert chosen and chosen.group(1) in ("fp32", "int8", "torch_bf16")
    empty = run_cli("predict", cwd=root, **env)
    assert empty.returncode == 1 and "predict: no texts" in empty.stderr


def test_explain_reads_the_pytorch_checkpoint_beside_a_registered_version(world, registered, tmp_path):
    root = world["root"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    review = "A slow start, but the ending was wonderful and moving."
    proc = run_cli("explain", review, "--out", str(tmp_path / "heat"), "--json", cwd=root, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["model"] == "imdb-sentiment@champion" and report["label"] in ("negative", "positive")
    assert (tmp_path / "heat" / "layer0.png").read_bytes().startswith(b"\x89PNG")
    table = run_cli(
        "explain", review, "-m", "1", "--layer", "0", "--head", "1", "--out", str(tmp_path / "h2"), cwd=root, **env
    )
    assert table.returncode == 0, table.stderr[-2000:]
    assert "[CLS] attends to (layer 0 of 0-1, head 1)" in table.stdout and "imdb-sentiment/1" in table.stdout
    missing = run_cli("explain", review, "-m", "9", cwd=root, **env)
    assert missing.returncode == 1 and "imdb-sentiment has no version or alias '9'" in missing.stderr


def test_a_registration_cut_short_before_its_gate_is_finished_by_the_rerun(world, client):
    """As if register was killed right after the version was created: the rerun gates and tags it
    instead of answering 'already registered'."""
    from imdb_mlops.registry.publish import ensure_registered_model
    from imdb_mlops.serving.settings import classifier_settings
    from imdb_mlops.stages.register import log_version

    tree = world["weak"].model_dump()
    tree["registry"]["model_name"] = "imdb-sentiment-interrupted"
    params = validate_params(tree)
    root, paths = world["root"], world["candidates"]["weak"]
    run_id = json.loads((paths["reports"] / "train_run.json").read_text())["run_id"]
    onnx_report = json.loads((paths["reports"] / "onnx.json").read_text())
    metrics = json.loads((paths["reports"] / "metrics.json").read_text())
    ensure_registered_model(client, "imdb-sentiment-interrupted", "test")
    settings = classifier_settings(params.registry, params.tokenize, paths["onnx"], onnx_report)
    log_version(params, client, run_id, (paths["onnx"], paths["model"]), settings, (metrics, onnx_report), root)
    assert "gate.action" not in client.get_model_version("imdb-sentiment-interrupted", "1").tags
    report = register_candidate(root, params, paths, "register-interrupted.json")
    assert report["version"] == 1 and report["gate"]["action"] == "promoted"
    finished = client.get_model_version("imdb-sentiment-interrupted", "1")
    assert finished.tags["gate.action"] == "promoted" and sorted(finished.aliases) == ["challenger", "champion"]
    assert len(client.search_model_versions("name='imdb-sentiment-interrupted'")) == 1


def test_manual_mode_leaves_promotion_to_people(world, client):
    tree = world["strong"].model_dump()
    tree["registry"].update({"model_name": "imdb-sentiment-manual", "promotion": "manual"})
    manual = validate_params(tree)
    root = world["root"]
    first = register_candidate(root, manual, world["candidates"]["weak"], "register-manual.json")
    assert first["gate"]["action"] == "promoted"  # the first version is always champion
    second = register_candidate(root, manual, world["candidates"]["strong"], "register-manual.json")
    assert second["gate"]["action"] == "awaiting_manual_promotion" and second["gate"]["passes"] is True
    assert champion(client, "imdb-sentiment-manual") == "1"


def test_mlflow_models_serve_answers_on_loopback(world, registered):
    root, port = world["root"], free_port()
    env = cli_env(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    server = start_logged_server(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        root,
        env,
        root / f"models-serve-{port}.log",
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server)
        url = f"http://127.0.0.1:{port}/invocations"
        answer = requests.post(
            url, json={"inputs": ["awful boring dull terrible", "wonderful brilliant superb"]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["label"] for p in predictions] == ["negative", "positive"]
        assert all(0.5 <= p["probability"] <= 1 for p in predictions)
        frame = requests.post(url, json={"dataframe_split": {"columns": ["text"], "data": [["superb"]]}}, timeout=30)
        assert frame.status_code == 200 and len(frame.json()["predictions"]) == 1
        too_many = requests.post(url, json={"inputs": ["fine"] * 300}, timeout=30)
        assert too_many.status_code == 400
        assert too_many.json()["message"] == "request too large: 300 texts, at most 256 per request"
        too_long = requests.post(url, json={"inputs": ["fine", "x" * 60_000]}, timeout=30)
        assert too_long.status_code == 400
        assert too_long.json()["message"] == "text 1 too long: 60,000 characters, at most 50,000"
        # what MLflow would convert or drop before the model saw it is refused as sent
        for body, message in (
            ({"inputs": [None]}, "text 0: expected a string, got NoneType"),
            ({"inputs": ["fine", 123]}, "text 1: expected a string, got int"),
            ({"inputs": [1.5]}, "text 0: expected a string, got float"),
            ({"dataframe_split": {"columns": ["id", "text"], "data": [["a1", "superb"]]}}, "input shape"),
        ):
            refused = requests.post(url, json=body, timeout=30)
            assert refused.status_code == 400, (body, refused.text)
            assert message in refused.json()["message"], (body, refused.text)
        host_ip = socket.gethostbyname(socket.gethostname())
        if not host_ip.startswith("127."):  # bound to loopback only: another address is refused
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{host_ip}:{port}/ping", timeout=2)
    finally:
        stop_server(server)


def test_registration_against_a_real_mlflow_server(world, tmp_path):
    from mlflow import MlflowClient

    port = free_port()
    server = start_mlflow_server(port, f"sqlite:///{tmp_path / 'server.db'}", tmp_path, tmp_path / "server-artifacts")
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{uri}/health", server)
        world["patch"].setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment("imdb-sentiment")
        paths = dict(world["candidates"]["strong"])
        run = client.create_run(experiment, tags={"mlflow.source.git.commit": "abc123"})
        client.set_terminated(run.info.run_id)
        paths["reports"] = tmp_path / "reports"
        paths["reports"].mkdir()
        for name in ("metrics.json", "onnx.json"):
            (paths["reports"] / name).write_text((world["candidates"]["strong"]["reports"] / name).read_text())
        (paths["reports"] / "train_run.json").write_text(json.dumps({"run_id": run.info.run_id}))
        report = register_candidate(world["root"], world["strong"], paths)
        assert report["version"] == 1 and report["tracking_uri"] == uri and report["gate"]["action"] == "promoted"
        assert str(client.get_registered_model(MODEL).aliases["champion"]) == "1"
        assert client.get_model_version(MODEL, "1").tags["git.commit"] == "abc123"
        import mlflow

        mlflow.set_tracking_uri(uri)
        served = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(
            np.array(["superb wonderful brilliant"], dtype=object)
        )
        assert served["label"].tolist() == ["positive"]
        assert list((tmp_path / "server-artifacts").rglob("model.*.onnx"))  # artifacts went through the server
    finally:
        world["patch"].setenv("MLFLOW_TRACKING_URI", f"sqlite:///{world['root'] / 'mlflow.db'}")
        stop_server(server)


def test_missing_inputs_are_clear_errors(world, tmp_path):
    paths = dict(world["candidates"]["strong"])
    paths["reports"] = tmp_path
    with pytest.raises(PipelineError, match="train_run.json: missing; run the train stage first"):
        register_candidate(world["root"], world["strong"], paths)
    (tmp_path / "train_run.json").write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(PipelineError, match="onnx.json: missing; run the export stage first"):
        register_candidate(world["root"], world["strong"], paths)
