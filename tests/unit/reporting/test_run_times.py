"""The table exp-run ends with: stage seconds, the machine, the choices read from the reports."""

from __future__ import annotations

import json

from rich.console import Console

from imdb_mlops.orchestration.stage_clock import StageClock
from imdb_mlops.reporting.run_times import run_time_table


def rendered(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_the_table_shows_stage_seconds_the_machine_and_the_choices(tmp_path):
    (tmp_path / "train_metrics.json").write_text(json.dumps({"precision": "bf16", "train_samples_per_second": 9.5}))
    (tmp_path / "onnx.json").write_text(json.dumps({"shipped": ["fp32", "int8"], "int8_weight_bits": 7}))
    generation = {"decoding_precision": "fp32",
                  "training": {"enabled": True, "method": "lora", "precision": "fp32", "steps": 60, "train_runtime_s": 99.0}}  # fmt: skip
    (tmp_path / "generation.json").write_text(json.dumps(generation))
    clock = StageClock(seconds={"train": 300.0, "generate": 300.0}, skipped=["ingest"])
    text = rendered(run_time_table(clock, 660.0, expected=12, code=0, reports=tmp_path))
    assert "train" in text and "300" in text and "45%" in text and "unchanged" in text
    assert "660 (11.0 min)" in text and "within the profile's 12 min" in text
    assert "fp32, int8 (int8 weights 7-bit)" in text and "lora, fp32, 60 steps in 99.0 s" in text
    assert "bf16, 9.5 samples/s" in text and "CPU flags" in text
    over = rendered(run_time_table(clock, 800.0, expected=12, code=2, reports=tmp_path / "none"))
    assert "over the profile's 12 min" in over and "dvc exited 2" in over


def test_int8_weight_bits_are_shown_only_when_int8_shipped(tmp_path):
    (tmp_path / "onnx.json").write_text(json.dumps({"shipped": ["fp32", "torch_bf16"], "int8_weight_bits": 8}))
    text = rendered(run_time_table(StageClock(), 10.0, expected=None, code=0, reports=tmp_path))
    assert "fp32, torch_bf16" in text and "8-bit" not in text


def test_a_partly_frozen_classifier_shows_the_share_of_weights_it_trained(tmp_path):
    train = {"precision": "fp32", "train_samples_per_second": 12.0, "trainable_parameters": 7_246_466,
             "parameters": 22_713_986}  # fmt: skip
    (tmp_path / "train_metrics.json").write_text(json.dumps(train))
    text = rendered(run_time_table(StageClock(), 10.0, expected=None, code=0, reports=tmp_path))
    assert "fp32, 12.0 samples/s, 32% of the weights trained" in text
    (tmp_path / "train_metrics.json").write_text(json.dumps(train | {"trainable_parameters": 22_713_986}))
    assert "weights trained" not in rendered(run_time_table(StageClock(), 10.0, None, 0, reports=tmp_path))
