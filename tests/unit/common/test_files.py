import pytest

from imdb_mlops.common.files import atomic_outputs


def test_outputs_appear_together(tmp_path):
    with atomic_outputs(tmp_path / "out", tmp_path / "report.json") as (folder, report):
        folder.mkdir()
        (folder / "a.txt").write_text("a")
        report.write_text("{}")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a" and (tmp_path / "report.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "report.json"]


def test_failure_keeps_previous_outputs_and_leaves_no_temporaries(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs(tmp_path / "out") as (folder,):
        folder.mkdir()
        (folder / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_the_stage_forgot_is_an_error(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="report.json"),
        atomic_outputs(tmp_path / "a", tmp_path / "report.json") as (a, _),
    ):
        a.write_text("x")
    assert not (tmp_path / "a").exists()
