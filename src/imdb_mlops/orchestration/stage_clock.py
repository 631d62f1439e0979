"""Where the time of a ``dvc exp run`` / ``dvc repro`` goes: each stage's seconds, read from DVC's
own output as it runs (``Running stage 'NAME':`` starts a stage; the next one, or the end, stops it;
``Stage 'NAME' didn't change, skipping`` or ``... is cached - skipping run`` marks one skipped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imdb_mlops.common.processes import tools_first_env

_RUNNING = re.compile(rb"Running stage '([^']+)'")
# unchanged ("didn't change"), or restored from the run-cache ("is cached - skipping run")
_SKIPPED = re.compile(rb"'([^']+)' (?:didn't change, skipping|is cached - skipping run)")


@dataclass
class StageClock:
    """Stage start and end times, fed DVC's output in chunks of any size."""

    clock: Callable[[], float] = time.perf_counter
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    _current: tuple[str, float] | None = None
    _tail: bytes = b""

    def feed(self, chunk: bytes) -> None:
        text = self._tail + chunk
        consumed = 0  # a match is never seen twice: the tail starts after it
        for match in sorted([*_RUNNING.finditer(text), *_SKIPPED.finditer(text)], key=lambda m: m.start()):
            consumed = match.end()
            name = match.group(1).decode(errors="replace")
            if match.re is _RUNNING:
                now = self.clock()
                self.stop(now)
                self._current = (name, now)
            else:  # the stage before it has ended
                self.stop()
                if name not in self.skipped:
                    self.skipped.append(name)
        cut = max(text.rfind(b"\n") + 1, text.rfind(b"\r") + 1, consumed)
        self._tail = text[cut:][-200:]

    def stop(self, now: float | None = None) -> None:
        if self._current is not None:
            name, began = self._current
            now = self.clock() if now is None else now
            self.seconds[name] = self.seconds.get(name, 0.0) + now - began
            self._current = None


def run_timed(command: list[str], clock: StageClock | None = None) -> tuple[int, StageClock, float]:
    """Run ``command`` (found first among this environment's scripts: :func:`tools_first_env`), its
    output passed through unchanged, and time its stages; (exit code, clock, whole seconds)."""
    clock = clock or StageClock()
    began = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=tools_first_env()) as process:
        assert process.stdout is not None
        out = sys.stdout.buffer
        while chunk := os.read(process.stdout.fileno(), 4096):
            out.write(chunk)
            out.flush()
            clock.feed(chunk)
        code = process.wait()
    clock.stop()
    return code, clock, time.perf_counter() - began
