"""Batch scoring (imdb_mlops.scoring.batch and pipelines/scoring_flow.py) with the champion registered by
the training flow: formats, predictions, drift report and its warnings, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import make_reviews, new_mlflow_store
from imdb_mlops.common.errors import PipelineError
from imdb_mlops.config import load_params
from imdb_mlops.stages.score import score

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="flow")]


@pytest.fixture
def scoring_env(flow_project, monkeypatch):
    project, _ = flow_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    return project, load_params(project / "params.yaml")


def drifted_reviews(n: int) -> pd.DataFrame:
    """Long reviews in a script the uncased English WordPiece vocabulary mostly lacks."""
    rng = np.random.default_rng(0)
    words = ["ταινία", "υπέροχη", "βαρετή", "ηθοποιός", "σενάριο", "⟁⟟", "ᚠᚢᚦ", "ꙮꙮ"]
    return pd.DataFrame({"text": [" ".join(rng.choice(words, size=400)) for _ in range(n)]})


def test_scoring_flow_writes_predictions_and_a_clean_drift_report(scoring_env, tmp_path):
    from prefect.artifacts import Artifact

    from pipelines.scoring_flow import scoring_flow

    project, _ = scoring_env
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    new = make_reviews(120, seed=7, prefix="new ")
    new.iloc[:40].to_parquet(incoming / "a.parquet")
    new.iloc[40:80][["text"]].to_csv(incoming / "b.csv", index=False)
    new.iloc[80:110][["text"]].to_json(incoming / "c.jsonl", orient="records", lines=True)
    (incoming / "txt").mkdir()
    for i, text in enumerate(new["text"].iloc[110:]):
        (incoming / "txt" / f"{i}.txt").write_text(text)
    result = scoring_flow(input_path=str(incoming), out_dir=str(tmp_path / "out"), project_dir=str(project))
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert len(predictions) == 120 and result["reviews"] == 120 and result["model_version"] == "1"
    assert {"source", "text", "label", "probability", "positive_probability"} <= set(predictions.columns)
    truth = dict(zip(new["text"], new["label"], strict=True))
    accuracy = np.mean([(row.label == "positive") == bool(truth[row.text]) for row in predictions.itertuples()])
    assert accuracy >= 0.9
    drift = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert drift["warnings"] == [] and drift["drift"]["length_words"]["psi"] < 0.2
    assert Artifact.get("imdb-scoring-drift").data.count("| ok |") == 3
    table = json.loads(Artifact.get("imdb-scoring-drift-table").data)
    assert [row["status"] for row in table] == ["ok"] * 3 and table[0]["check"] == "review length (words, median)"


def test_a_drifted_batch_raises_warnings(scoring_env, tmp_path):
    project, params = scoring_env
    drifted_reviews(60).to_json(tmp_path / "drifted.jsonl", orient="records", lines=True)
    report = score(
        params, tmp_path / "drifted.jsonl", tmp_path / "out", None, project / "data/raw", project_dir=project
    )
    drift = report["drift"]
    assert drift["length_words"]["psi"] > 0.2 and "review lengths differ" in drift["length_words"]["warning"]
    assert drift["unknown_token_rate"]["current"] > drift["unknown_token_rate"]["reference"] + 0.01
    assert any(w.startswith("unknown_token_rate:") for w in report["warnings"])
    assert json.loads((tmp_path / "out" / "drift.json").read_text())["warnings"] == report["warnings"]


def test_bad_scoring_input_is_a_clear_error_and_writes_nothing(scoring_env, tmp_path):
    project, params = scoring_env
    out = tmp_path / "out"
    pd.DataFrame({"review": ["fine"]}).to_csv(tmp_path / "no_text.csv", index=False)
    with pytest.raises(
        PipelineError, match=r"no_text.csv: no text column 'text' \(columns: review; set scoring.text_column\)"
    ):
        score(params, tmp_path / "no_text.csv", out, None, project / "data/raw", project_dir=project)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match=r"empty: no reviews found"):
        score(params, tmp_path / "empty", out, None, project / "data/raw", project_dir=project)
    (tmp_path / "r.txt").write_text("fine film\n")
    with pytest.raises(PipelineError, match=r"imdb-sentiment has no version or alias 'challenger-2'"):
        score(params, tmp_path / "r.txt", out, "challenger-2", project / "data/raw", project_dir=project)
    assert not out.exists()


def test_no_champion_yet_is_a_clear_error(scoring_env, tmp_path, monkeypatch):
    project, params = scoring_env

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'missing.db'}")
    (tmp_path / "r.txt").write_text("fine film\n")
    with pytest.raises(PipelineError, match=r"missing.db: no tracking store there yet; run the pipeline first"):
        score(params, tmp_path / "r.txt", tmp_path / "out", None, project / "data/raw", project_dir=project)
    assert not (tmp_path / "missing.db").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path, "empty.db"))  # a store, no model
    with pytest.raises(PipelineError, match=r"registry: no registered model 'imdb-sentiment'.*run the pipeline"):
        score(params, tmp_path / "r.txt", tmp_path / "out", None, project / "data/raw", project_dir=project)


def test_score_command_prints_the_drift_table(scoring_env, tmp_path):
    from helpers import run_cli

    project, _ = scoring_env
    make_reviews(30, seed=9)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    proc = run_cli("score", str(tmp_path / "new.csv"), "--out", str(tmp_path / "out"), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "30 reviews scored with models:/imdb-sentiment@champion (version 1)" in proc.stderr.replace("\n", " ")
    assert (tmp_path / "out" / "predictions.parquet").is_dir() and (tmp_path / "out" / "drift.json").is_file()
    missing = run_cli("score", str(tmp_path / "nothing.csv"), cwd=project)
    assert missing.returncode == 1 and "nothing.csv: no such file or folder" in missing.stderr
