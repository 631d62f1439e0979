"""Atomic stage outputs: all or nothing, old or new after a kill, and never over a foreign path."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imdb_mlops.common.errors import PipelineError
from imdb_mlops.common.files import MARKER, atomic_outputs, recover, scratch_folder
from imdb_mlops.common.output_owners import MANIFEST


def write_outputs(root, text, owner="ingest"):
    with atomic_outputs(root / "out", root / "report.json", owner=owner) as (folder, report):
        folder.mkdir()
        (folder / "a.txt").write_text(text)
        (folder / "b.txt").write_text(text)
        report.write_text(json.dumps({"text": text}))


def state(root):
    """('old' | 'new' | 'missing' | 'partial') of the folder and the report."""
    folder = root / "out"
    if not folder.exists():
        folder_state = "missing"
    else:
        texts = {p.read_text() for p in folder.glob("*.txt")}
        names = sorted(p.name for p in folder.iterdir())
        folder_state = texts.pop() if len(texts) == 1 and names == [MARKER, "a.txt", "b.txt"] else "partial"
    report = root / "report.json"
    report_state = json.loads(report.read_text())["text"] if report.exists() else "missing"
    return folder_state, report_state


def test_outputs_appear_together_with_the_owner_marker(tmp_path):
    with atomic_outputs(tmp_path / "out", tmp_path / "report.json", owner="ingest") as (folder, report):
        folder.mkdir()
        (folder / "a.txt").write_text("a")
        report.write_text("{}")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a" and (tmp_path / "report.json").exists()
    assert json.loads((tmp_path / "out" / MARKER).read_text()) == {"owner": "ingest", "output": "out"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "out", "report.json"]
    assert json.loads((tmp_path / MANIFEST).read_text()) == {"files": {"report.json": "ingest"}}


def test_failure_keeps_previous_outputs_and_leaves_no_temporaries(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_outputs(tmp_path / "out", owner="ingest") as (folder,):
        folder.mkdir()
        (folder / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_the_stage_forgot_is_an_error(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="report.json"),
        atomic_outputs(tmp_path / "a", tmp_path / "report.json", owner="ingest") as (a, _),
    ):
        a.write_text("x")
    assert not (tmp_path / "a").exists()


def test_a_previous_output_of_the_same_kind_is_replaced(tmp_path):
    write_outputs(tmp_path, "old")
    write_outputs(tmp_path, "new")
    assert state(tmp_path) == ("new", "new")
    # an unmarked folder (an earlier version's output, or one DVC pulled) whose entries the new one has
    (tmp_path / "out" / MARKER).unlink()
    write_outputs(tmp_path, "newer")
    assert state(tmp_path) == ("newer", "newer")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # score --out reports: a folder of other files
        (lambda p: [(p / "out").mkdir(), (p / "out" / "metrics.json").write_text("{}")], "it holds metrics.json"),
        # ingest --report reports: a folder where a file is written
        (lambda p: (p / "report.json").mkdir(), "a folder where a file is written"),
        # --out pointing at a file
        (lambda p: (p / "out").write_text("mine"), "a file it did not write"),
        # another command's output folder
        (lambda p: write_outputs(p, "theirs", owner="train"), "another command's output"),
    ],
)
def test_anything_else_is_refused_and_left_as_it_was(tmp_path, make, message):
    make(tmp_path)
    before = sorted((p.relative_to(tmp_path), p.is_dir()) for p in tmp_path.rglob("*"))
    if (tmp_path / "out").is_dir() and (tmp_path / "out" / MARKER).exists():
        (tmp_path / "out" / "extra.txt").write_text("x")  # another owner's folder: marker alone does not do
        before = sorted((p.relative_to(tmp_path), p.is_dir()) for p in tmp_path.rglob("*"))
    with pytest.raises(PipelineError, match=f"exists and is not an output of `imdb-mlops ingest` .*{message}"):
        write_outputs(tmp_path, "new")
    assert sorted((p.relative_to(tmp_path), p.is_dir()) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "report.json").write_text("# my notes"), "a file it did not write"),  # --report README.md
        (lambda p: write_outputs(p, "theirs", owner="train"), "a file it did not write"),  # another command's report
    ],
)
def test_a_file_the_command_did_not_write_is_refused_before_any_work(tmp_path, monkeypatch, make, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    before = (tmp_path / "report.json").read_text()
    entered = []
    with (
        pytest.raises(
            PipelineError, match=f"report.json: exists and is not an output of `imdb-mlops ingest` .{message}"
        ),
        atomic_outputs(tmp_path / "report.json", owner="ingest"),
    ):
        entered.append(True)
    assert entered == [] and (tmp_path / "report.json").read_text() == before


def test_a_file_its_dvc_stage_declares_is_replaced_though_no_manifest_names_it(tmp_path, monkeypatch):
    """What ``dvc pull`` or ``dvc checkout`` puts back carries no manifest entry."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  ingest:\n    cmd: imdb-mlops ingest --report reports/data.json\n"
        "    metrics:\n      - reports/data.json:\n          cache: false\n"
        "  train:\n    cmd: imdb-mlops train\n    outs:\n      - reports/train.json\n"
    )
    (tmp_path / "reports").mkdir()
    for name in ("data.json", "train.json"):
        (tmp_path / "reports" / name).write_text("{}")
    with atomic_outputs(Path("reports/data.json"), owner="ingest") as (report,):
        report.write_text('{"new": 1}')
    assert json.loads((tmp_path / "reports" / "data.json").read_text()) == {"new": 1}
    with (
        pytest.raises(PipelineError, match="a file it did not write"),
        atomic_outputs(Path("reports/train.json"), owner="ingest"),
    ):
        pass  # declared, but by the train stage


@pytest.mark.parametrize("target", [".", "..", ""])
def test_the_working_folder_or_above_is_refused_as_an_output(tmp_path, monkeypatch, target):
    monkeypatch.chdir(tmp_path)
    with (
        pytest.raises(PipelineError, match="is the working folder or one above it"),
        atomic_outputs(Path(target), owner="ingest"),
    ):
        pass


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import imdb_mlops.common.files as files
    sys.path.insert(0, {tests!r})
    from unit.common.test_files import write_outputs

    calls = 0
    real = os.replace
    def replace(src, dst):
        global calls
        calls += 1
        if calls == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # stopped dead before this rename
        real(src, dst)
    files.os.replace = replace
    write_outputs(Path({root!r}), "new")
    """
)


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])  # before each of the four renames of a two-output swap
def test_a_kill_inside_the_replace_leaves_old_or_new_and_the_next_run_recovers(tmp_path, kill_at):
    root = tmp_path / "project"
    root.mkdir()
    write_outputs(root, "old")
    tests = str(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    script = KILLER.format(tests=tests, kill_at=kill_at, root=str(root))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    for target in (root / "out", root / "report.json"):
        recover(target)  # what the next run does first
    folder, report = state(root)
    assert folder in ("old", "new") and report in ("old", "new"), (folder, report)
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST, "out", "report.json"]  # no backups, temporaries
    write_outputs(root, "again")
    assert state(root) == ("again", "again")


def test_leftovers_of_a_live_process_are_not_touched(tmp_path):
    (tmp_path / "out").mkdir()
    mine = tmp_path / f".out.{os.getpid()}.abc.tmp"
    mine.mkdir()
    gone = tmp_path / ".out.999999999.def.tmp"  # no such process
    gone.mkdir()
    recover(tmp_path / "out")
    assert mine.exists() and not gone.exists()


SCRATCH_KILLER = textwrap.dedent(
    """
    import os, signal
    from pathlib import Path
    from imdb_mlops.common.files import scratch_folder

    with scratch_folder(Path({target!r})) as work:
        (work / "model.raw.onnx").write_bytes(bytes(1 << 20))
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-stage: no cleanup runs
    """
)


def test_a_scratch_folder_lies_beside_its_output_and_a_killed_runs_is_deleted_by_the_next_run(tmp_path):
    target = tmp_path / "models" / "onnx"
    with scratch_folder(target) as work:
        assert work.parent == target.parent and work.name.startswith(f".onnx.{os.getpid()}.")
        (work / "model.fp32.onnx").write_text("graph")
    assert list(target.parent.iterdir()) == []  # removed after use
    proc = subprocess.run([sys.executable, "-c", SCRATCH_KILLER.format(target=str(target))], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    [left] = target.parent.iterdir()  # the killed run's megabyte, beside the output and not in /tmp
    assert (left / "model.raw.onnx").stat().st_size == 1 << 20
    with scratch_folder(target) as work:
        assert [p.name for p in target.parent.iterdir()] == [work.name]  # the next run deleted it
