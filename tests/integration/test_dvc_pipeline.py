"""The DVC pipeline in a fresh copy of the repository, every stage built by one ``dvc exp run``
(conftest's ``dvc_experiment``: a tiny DistilBERT and GPT-2 built from configs, shipped as a package),
then ``dvc repro``'s selective re-runs, kills and remotes, with a real DVC remote and the project's
embedded MLflow store."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT, experiment_env, set_params
from helpers import run as run_in
from imdb_mlops.common.files import MARKER

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="dvc")]


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str):
    """Run in ``cwd`` against the project's own MLflow store, whatever another test left in os.environ,
    with the packaged checkpoints on the path."""
    return run_in(cmd, cwd, check=check, **{**experiment_env(cwd), **env})


def digests(*folders: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER  # the owner marker is ours, not DVC's (.dvcignore)
    }


STAGES = ("ingest", "tokenize", "train", "evaluate", "export", "register", "generate")


@pytest.fixture(scope="module")
def built(dvc_experiment) -> Path:
    """The project one ``dvc exp run`` of every stage built (conftest's ``dvc_experiment``)."""
    return dvc_experiment


def test_repro_writes_every_stage_and_locks_them(built):
    for split in ("train", "validation", "test"):
        assert (built / "data" / "raw" / f"{split}.parquet").is_file()
        assert (built / "data" / "tokenized" / split / "dataset_info.json").is_file()
    assert (built / "models" / "classifier" / "model.safetensors").is_file()
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["tokenize"]["params"]["params.yaml"]["tokenize"]["max_length"] == 64
    ignored = (built / "data" / ".gitignore").read_text().split()
    assert {"/raw", "/tokenized"} <= set(ignored)
    metrics = run(["dvc", "metrics", "show", "--json"], built).stdout
    for key in ("positive_share", "truncated_share", "train_samples_per_second", "roc_auc", "ece"):
        assert key in metrics
    errors = [json.loads(line) for line in (built / "reports" / "errors.jsonl").read_text().splitlines()]
    assert 0 < len(errors) <= 20 and "text" in errors[0]
    # attention heatmaps of the most confident mistakes, and what [CLS] attended to in each
    for rank, mistake in enumerate(errors[:3], start=1):
        png = built / "reports" / "figures" / "evaluation" / f"attention_mistake_{rank}.png"
        assert png.read_bytes().startswith(b"\x89PNG") and mistake["attention_figure"].endswith(png.name)
        assert len(mistake["cls_attention_top"]) == 8
    if len(errors) > 3:
        assert "attention_figure" not in errors[3]  # evaluate.attention_examples: 3


def test_plots_render_to_one_html_page(built):
    run(["dvc", "plots", "show", "-o", "plots-html"], built)
    page = (built / "plots-html" / "index.html").read_text()
    for title in ("Training loss", "Confusion matrix", "ROC", "Precision-recall", "Calibration", "training_curves.png"):
        assert title in page


def test_mlflow_run_holds_params_metrics_tags_and_datasets(built):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{built / 'mlflow.db'}")
    run_id = json.loads((built / "reports" / "train_run.json").read_text())["run_id"]
    run_ = client.get_run(run_id)
    params, metrics, tags = run_.data.params, run_.data.metrics, run_.data.tags
    assert (
        params["train.learning_rate"] == "0.001"
        and params["model.name"] == yaml.safe_load((built / "params.yaml").read_text())["model"]["name"]
    )
    assert params["data.max_samples.train"] == "null" and "tokenize.max_length" in params
    assert len(client.get_metric_history(run_id, "loss")) >= 4
    for key in (
        "learning_rate",
        "grad_norm",
        "eval_accuracy",
        "eval_f1",
        "final_val_accuracy",
        "test_accuracy",
        "test_roc_auc",
        "test_accuracy_ci_low",
    ):
        assert key in metrics, key
    assert any(key.startswith("system/") for key in metrics)
    head = run(["git", "rev-parse", "HEAD"], built).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    tokenized_md5 = next(o["md5"] for o in lock["stages"]["tokenize"]["outs"] if o["path"] == "data/tokenized")
    assert tags["dvc.data/tokenized.md5"] == tokenized_md5
    assert tags["reproducible"] == "true" and tags["git.dirty_code"] == "false"  # committed code and params
    recorded = {a.path for a in client.list_artifacts(run_id)}
    assert {"params.yaml", "dvc.lock"} <= recorded
    inputs = {d.dataset.name: d for d in run_.inputs.dataset_inputs}
    assert set(inputs) == {"imdb-train", "imdb-validation", "imdb-test"}
    assert all(d.dataset.digest and "imdb" in d.dataset.source for d in inputs.values())
    artifacts = {a.path for a in client.list_artifacts(run_id, "figures/evaluation")}
    assert "figures/evaluation/confusion_matrix.png" in artifacts
    assert "figures/evaluation/attention_mistake_1.png" in artifacts
    assert metrics["variant_fp32_agreement"] == 1.0 and "variant_fp32_batch32_texts_per_s" in metrics
    assert tags["onnx.provider"] == "CPUExecutionProvider" and "fp32" in tags["variants.shipped"].split(",")


def test_repro_ends_with_a_registered_champion_traceable_to_the_lock(built):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{built / 'mlflow.db'}")
    report = json.loads((built / "reports" / "register.json").read_text())
    assert report["version"] == 1 and report["gate"]["action"] == "promoted"
    model = client.get_registered_model("imdb-sentiment")
    assert str(model.aliases["champion"]) == "1" and str(model.aliases["challenger"]) == "1"
    tags = client.get_model_version("imdb-sentiment", "1").tags
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for stage in ("ingest", "tokenize", "train") for o in lock["stages"][stage]["outs"]}
    for path in ("data/raw", "data/tokenized", "models/classifier"):
        assert tags[f"dvc.{path}.md5"] == outs[path]
    assert tags["git.commit"] == run(["git", "rev-parse", "HEAD"], built).stdout.strip()
    assert tags["training_run_id"] == json.loads((built / "reports" / "train_run.json").read_text())["run_id"]


def test_up_to_date_pipeline_skips_every_stage(built):
    proc = run(["dvc", "repro"], built)
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in proc.stdout
    assert "Running stage" not in proc.stdout
    assert "up to date" in run(["dvc", "status"], built).stdout


def test_a_failing_stage_keeps_the_outputs_of_the_last_good_run(built, tmp_path):
    """DVC deletes a stage's outputs before it runs; the failing command puts them back from DVC's
    cache (the metrics file too: cache: false, held by the run-cache), so dvc.lock still holds."""
    kept = [built / "data" / "raw", built / "reports" / "data.json"]
    before = {**digests(kept[0]), "data.json": hashlib.sha256(kept[1].read_bytes()).hexdigest()}
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n" + "".join(f"review number {i},{'x' if i == 5 else i % 2}\n" for i in range(40)))
    source = yaml.safe_load((built / "params.yaml").read_text())["data"]["source"]
    set_params(built, **{"data.source": str(bad)})
    try:
        proc = run(["dvc", "repro", "ingest"], built, check=False)
        assert proc.returncode != 0
        assert "bad.csv row 6: label 'x' is not 0 or 1" in proc.stderr
        assert "kept the previous outputs (back from DVC's cache): data/raw, reports/data.json" in proc.stderr
        after = {**digests(kept[0]), "data.json": hashlib.sha256(kept[1].read_bytes()).hexdigest()}
        assert after == before
        assert not list(built.glob("data/.raw.*")) and not list(built.glob("reports/.data.json.*"))
    finally:
        set_params(built, **{"data.source": source})
    assert "up to date" in run(["dvc", "status"], built).stdout  # the workspace matches dvc.lock again


def test_push_delete_pull_restores_identical_files(built):
    outputs = [
        built / "data" / "raw",
        built / "data" / "tokenized",
        built / "models" / "classifier",
        built / "models" / "onnx",
        built / "models" / "generator",
    ]
    before = digests(*outputs)
    run(["dvc", "push"], built)
    for folder in outputs:
        shutil.rmtree(folder)
    shutil.rmtree(built / ".dvc" / "cache")
    run(["dvc", "pull"], built)
    assert digests(*outputs) == before


def test_changing_a_generation_param_reruns_generate_only(built):
    classifier_before = digests(built / "models" / "classifier")
    first = json.loads((built / "reports" / "generation.json").read_text())
    set_params(built, **{"generation.decoding.temperature": 0.7})
    status = run(["dvc", "status", "--json"], built).stdout
    assert set(json.loads(status)) == {"generate"}
    proc = run(["dvc", "repro"], built)
    assert proc.stdout.count("Running stage") == 1 and "Running stage 'generate'" in proc.stdout
    assert digests(built / "models" / "classifier") == classifier_before  # the classifier is not retrained
    report = json.loads((built / "reports" / "generation.json").read_text())
    assert report["version"] == first["version"] + 1 and report["run_id"] != first["run_id"]
    from mlflow import MlflowClient

    tags = MlflowClient(tracking_uri=f"sqlite:///{built / 'mlflow.db'}").get_run(report["run_id"]).data.tags
    assert tags["classifier_run_id"] == json.loads((built / "reports" / "train_run.json").read_text())["run_id"]
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    assert lock["stages"]["generate"]["params"]["params.yaml"]["generation"]["decoding"]["temperature"] == 0.7


def test_changing_an_evaluate_param_reruns_evaluate_only(built):
    set_params(built, **{"evaluate.top_errors": 3})
    proc = run(["dvc", "repro"], built)
    for stage in ("ingest", "tokenize", "train", "export", "generate"):
        assert f"Stage '{stage}' didn't change, skipping" in proc.stdout
    assert "Running stage 'evaluate'" in proc.stdout
    assert len((built / "reports" / "errors.jsonl").read_text().splitlines()) <= 3
    # Same training run: registering again (if metrics.json changed at all) adds no version.
    assert json.loads((built / "reports" / "register.json").read_text())["version"] == 1


def test_changing_a_tokenize_param_reruns_from_tokenize_on(built):
    """DVC sees tokenize changed (not ingest); everything downstream of it in DVC's graph would
    follow (the real cascade is exercised by the evaluate and generate re-runs above)."""
    from imdb_mlops.orchestration.dvc_stages import upstream

    set_params(built, **{"tokenize.max_length": 32})
    # changed now: tokenize, and the stages that read tokenize.* params themselves (cutting reviews
    # for attention maps, serving and scoring generated reviews)
    assert set(json.loads(run(["dvc", "status", "--json"], built).stdout)) == {
        "tokenize",
        "evaluate",
        "register",
        "generate",
    }
    downstream = {stage for stage, ancestors in upstream(built).items() if "tokenize" in ancestors}
    assert downstream == {"train", "evaluate", "export", "register", "generate"}
    assert "tokenize" not in upstream(built)["ingest"]
    set_params(built, **{"tokenize.max_length": 64})
    assert "up to date" in run(["dvc", "status"], built).stdout


def test_a_helper_change_marks_the_stages_that_import_it_and_tracking_params_none(built):
    helper = built / "src" / "imdb_mlops" / "modeling" / "truncation.py"
    original = helper.read_text()
    helper.write_text(original + "\n# a change\n")
    try:
        changed = set(json.loads(run(["dvc", "status", "--json"], built).stdout))
    finally:
        helper.write_text(original)
    assert changed == {"tokenize", "evaluate", "register", "generate"}  # ingest, train, export do not cut reviews
    set_params(built, **{"tracking.experiment": "elsewhere", "tracking.timeout_s": 30.0})
    try:
        assert "up to date" in run(["dvc", "status"], built).stdout  # where runs are logged retrains nothing
    finally:
        set_params(built, **{"tracking.experiment": "imdb-sentiment", "tracking.timeout_s": 5.0})


def test_switching_the_dvc_remote_is_a_config_change_only(built, tmp_path):
    outputs = [built / "data" / "raw", built / "models" / "classifier"]
    before = digests(*outputs)
    second = tmp_path / "second-remote"
    run(["dvc", "remote", "add", "backup", str(second)], built)
    try:
        run(["dvc", "push", "-r", "backup"], built)
        assert any(second.rglob("*"))
        run(["dvc", "remote", "default", "backup"], built)
        changed = [
            line.split()[-1]
            for line in run(["git", "status", "--porcelain", "--untracked-files=no"], built).stdout.splitlines()
        ]
        assert ".dvc/config" in changed and not [c for c in changed if c.startswith(("src/", "dvc.yaml", "pipelines/"))]
        for folder in outputs:
            shutil.rmtree(folder)
        shutil.rmtree(built / ".dvc" / "cache")
        run(["dvc", "pull"], built)  # from the new default remote
        assert digests(*outputs) == before
    finally:
        run(["dvc", "remote", "default", "storage"], built)


def test_bad_params_fail_the_stage_before_any_work(project_copy):
    project = project_copy
    text = (project / "params.yaml").read_text().replace("  clean_html: true", "  clean_html: true\n  sorce: x")
    (project / "params.yaml").write_text(text)
    proc = run(["dvc", "repro"], project, check=False)
    assert proc.returncode != 0
    assert "error: params.yaml: data.sorce: unknown key (did you mean 'data.source'?)" in proc.stderr
    assert not (project / "data" / "raw").exists()


def test_repository_remote_is_a_local_folder_by_default():
    config = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "remote = storage" in config and "url = ../../imdb-mlops-dvc-storage" in config


def _layout(path: Path) -> dict[str, str]:
    """File -> sha256 of an output (its owner marker aside: DVC does not pull it, the stage writes it)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    files = (p for p in path.rglob("*") if p.is_file() and p.name != MARKER)
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


KILLED_STAGES = {  # stage command, its first output, the rename to die before (2: old output moved aside, new not in)
    "tokenize": (["tokenize"], "data/tokenized", 2),
    "train": (["train"], "models/classifier", 2),
    "export": (["export"], "models/onnx", 2),
    "register": (["register"], "reports/register.json", 1),
}  # score writes parts as it goes, not by a swap: its killed-job test is in test_scoring_ray.py


@pytest.mark.parametrize("stage", list(KILLED_STAGES))
def test_each_writing_stage_killed_inside_its_swap_keeps_old_or_new_and_the_rerun_completes(built, stage):
    """SIGKILL at a rename of the swap: the output is whole (old or new) or, if the kill fell between
    its two renames, whole in its backup; the rerun puts things right; no worker is left alive."""
    import uuid

    from helpers import processes_with_env, run_cli_killed_at_rename

    args, output, kill_at = KILLED_STAGES[stage]
    target = built / output
    env = experiment_env(built)
    if not target.exists():
        run(["imdb-mlops", *args], built, **env)
    old = _layout(target)
    marker = f"IMDB_KILL_TEST={uuid.uuid4().hex}"
    killed = run_cli_killed_at_rename(args, kill_at, cwd=built, IMDB_KILL_TEST=marker.split("=")[1], **env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    if target.exists():
        assert set(_layout(target)) == set(old)  # whole: every file of the output, none half-written
    else:
        backups = list(target.parent.glob(f".{target.name}.*.old"))
        assert len(backups) == 1 and _layout(backups[0]) == old  # killed between its two renames
    assert processes_with_env(marker) == []  # the stage's workers died with it
    rerun = run(["imdb-mlops", *args], built, check=False, **env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert set(_layout(target)) == set(old)
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert leftovers == []
