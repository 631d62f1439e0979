"""The register stage refuses a pruned sweep trial's run."""

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.stages.register import refuse_pruned_trial


def test_a_pruned_sweep_trial_is_refused_and_a_completed_one_passes(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("imdb-sentiment")
    pruned = client.create_run(experiment, tags={"sweep.pruned": "true"}).info.run_id
    completed = client.create_run(experiment, tags={"sweep.pruned": "false"}).info.run_id
    plain = client.create_run(experiment).info.run_id
    with pytest.raises(PipelineError, match=f"train_run.json: run {pruned} is a pruned sweep trial"):
        refuse_pruned_trial(client, pruned, tmp_path / "train_run.json")
    refuse_pruned_trial(client, completed, tmp_path / "train_run.json")
    refuse_pruned_trial(client, plain, tmp_path / "train_run.json")
