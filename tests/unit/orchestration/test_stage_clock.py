"""Stage seconds read from DVC's output as it streams, in chunks cut anywhere."""

from __future__ import annotations

import sys

from imdb_mlops.orchestration.stage_clock import StageClock, run_timed

OUTPUT = (
    b"Stage 'ingest' didn't change, skipping\n"
    b"Running stage 'tokenize':\n> imdb-mlops tokenize\n\rTokenizing 50%\rTokenizing 100%\n"
    b"Running stage 'train':\n> imdb-mlops train\n"
    b"Stage 'evaluate' is cached - skipping run, checking out outputs\n"
    b"Updating lock file 'dvc.lock'\n"
)


def test_stages_are_timed_from_their_start_lines_even_when_a_line_is_cut_between_chunks():
    ticks = iter(range(0, 1000, 10))
    clock = StageClock(clock=lambda: float(next(ticks)))
    for i in range(0, len(OUTPUT), 7):  # 7-byte chunks cut the start lines in two
        clock.feed(OUTPUT[i : i + 7])
    clock.stop()
    assert list(clock.seconds) == ["tokenize", "train"]
    assert clock.seconds == {"tokenize": 10.0, "train": 10.0}  # start of tokenize (0), train (10), stop (20)
    assert clock.skipped == ["ingest", "evaluate"]


def test_a_command_runs_with_its_output_passed_through_and_its_exit_code_kept(capfd):
    script = "import time; print(\"Running stage 'a':\", flush=True); time.sleep(0.3); raise SystemExit(3)"
    code, clock, seconds = run_timed([sys.executable, "-c", script])
    assert code == 3 and "Running stage 'a':" in capfd.readouterr().out
    assert 0.25 <= clock.seconds["a"] <= seconds
