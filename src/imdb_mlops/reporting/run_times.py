"""The table an ``imdb-mlops exp-run`` ends with: each stage's seconds, this machine's CPU flags and
kind, the precision and variants the stages chose (from their reports), and what the profile
expects for this kind of machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from imdb_mlops.modeling.capabilities import capability_tags
from imdb_mlops.orchestration.stage_clock import StageClock

REPORTS = Path("reports")


def read_report(name: str, reports: Path = REPORTS) -> dict[str, Any]:
    try:
        return json.loads((reports / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def choices(reports: Path = REPORTS) -> list[tuple[str, str]]:
    """(what, chosen) pairs read from the stages' reports, those present."""
    train = read_report("train_metrics.json", reports)
    onnx = read_report("onnx.json", reports)
    generation = read_report("generation.json", reports)
    finetune = generation.get("training") or {}
    rows = []
    if train:
        trainable, every = train.get("trainable_parameters"), train.get("parameters")
        share = f", {trainable / every:.0%} of the weights trained" if trainable and every and trainable < every else ""
        rows.append(
            (
                "classifier training",
                f"{train.get('precision')}, {train.get('train_samples_per_second')} samples/s{share}",
            )
        )
    if onnx:
        shipped, bits = onnx.get("shipped", []), onnx.get("int8_weight_bits")
        note = f" (int8 weights {bits}-bit)" if "int8" in shipped and bits else ""
        rows.append(("variants shipped", ", ".join(shipped) + note))
    if finetune.get("enabled"):
        rows.append(
            (
                "generator fine-tuning",
                f"{finetune.get('method', 'full')}, {finetune.get('precision')}, {finetune.get('steps')} steps "
                f"in {finetune.get('train_runtime_s')} s",
            )
        )
    if generation:
        rows.append(("generator decoding", str(generation.get("decoding_precision"))))
    return rows


def run_time_table(
    clock: StageClock, seconds: float, expected: float | None, code: int, reports: Path = REPORTS
) -> Table:
    """Stage seconds (and share of the whole), then the machine and the choices made on it."""
    tags = capability_tags()
    table = Table(
        title="Where the time went" + ("" if code == 0 else f" (dvc exited {code})"),
        box=box.SIMPLE_HEAD,
        show_footer=False,
    )
    table.add_column("stage / machine")
    table.add_column("seconds / value", justify="right")
    table.add_column("share", justify="right")
    for name, stage_seconds in clock.seconds.items():
        table.add_row(name, f"{stage_seconds:.0f}", f"{stage_seconds / seconds:.0%}" if seconds else "-")
    for name in clock.skipped:
        if name not in clock.seconds:
            table.add_row(f"[dim]{name}[/]", "[dim]unchanged[/]", "")
    verdict = ""
    if expected is not None:
        verdict = "within" if seconds <= expected * 60 else "[bold red]over[/]"
        verdict = f"{verdict} the profile's {expected:g} min for {tags['machine.kind']}"
    table.add_row("[bold]whole run[/]", f"[bold]{seconds:.0f}[/] ({seconds / 60:.1f} min)", verdict, end_section=True)
    table.add_row("CPU", tags["cpu.model"], "")
    table.add_row("CPU flags", tags["cpu.flags"], "")
    table.add_row("machine kind", tags["machine.kind"] + (" (GPU)" if tags["cuda"] == "true" else ""), "")
    for what, chosen in choices(reports):
        table.add_row(what, chosen, "")
    return table
