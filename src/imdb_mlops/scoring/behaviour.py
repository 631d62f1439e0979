"""Behavioural checks of a classifier (in the manner of CheckList): the versioned suite in
``behaviour_suite.yaml`` expanded into texts, scored in one pass, and summarised per family.

- **mft** (minimum functionality): each text must get its expected label;
- **invariance**: the texts of a case (one slot varied: a name, a place, a title) must all get the
  same label;
- **directional**: appending a phrase must not move the positive probability the wrong way by more
  than the case's tolerance.

Entry point: :func:`run_behaviour_suite` with any ``texts -> positive probabilities`` function.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from imdb_mlops.common.errors import PipelineError

SUITE_PATH = Path(__file__).with_name("behaviour_suite.yaml")
FAMILIES = ("mft", "invariance", "directional")
_SLOT = re.compile(r"\{(\w+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MinimumFunctionality(_Strict):
    name: str
    template: str
    label: Literal["positive", "negative"]
    max_cases: int = 12


class Invariance(_Strict):
    name: str
    template: str
    vary: str
    max_cases: int = 6  # fillings of the other slots, each a case


class Directional(_Strict):
    name: str
    direction: Literal["up", "down"]
    add: str
    bases: list[str]
    tolerance: float = 0.01
    max_cases: int = 12


class BehaviourSuite(_Strict):
    version: int
    lexicons: dict[str, list[str]]
    mft: list[MinimumFunctionality]
    invariance: list[Invariance]
    directional: list[Directional]


def load_suite(path: Path = SUITE_PATH) -> BehaviourSuite:
    try:
        suite = BehaviourSuite.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise PipelineError(f"{path.name}: not a usable behaviour suite: {str(exc).splitlines()[0]}") from None
    for template in _templates(suite):
        unknown = [slot for slot in _SLOT.findall(template) if slot not in suite.lexicons]
        if unknown:
            raise PipelineError(f"{path.name}: template '{template}' uses {{{unknown[0]}}}, which no lexicon defines")
    return suite


def _templates(suite: BehaviourSuite) -> list[str]:
    return [
        *(t.template for t in suite.mft),
        *(t.template for t in suite.invariance),
        *(t.add for t in suite.directional),
        *(b for t in suite.directional for b in t.bases),
    ]


def expand(template: str, lexicons: dict[str, list[str]], max_cases: int | None = None) -> list[str]:
    """Every filling of ``template``'s slots (combinations in lexicon order), at most ``max_cases``."""
    slots = list(dict.fromkeys(_SLOT.findall(template)))
    fillings = itertools.product(*(lexicons[slot] for slot in slots))
    texts = (template.format_map(dict(zip(slots, values, strict=True))) for values in fillings)
    return list(itertools.islice(texts, max_cases))


def suite_texts(suite: BehaviourSuite) -> dict[str, list[Any]]:
    """The cases of each family as texts: mft (text, label), invariance [texts], directional
    (before, after, direction, tolerance); each with its test's name."""
    lex = suite.lexicons
    mft = [(t.name, text, t.label) for t in suite.mft for text in expand(t.template, lex, t.max_cases)]
    invariance = []
    for t in suite.invariance:
        others = [slot for slot in dict.fromkeys(_SLOT.findall(t.template)) if slot != t.vary]
        fillings = itertools.islice(itertools.product(*(lex[slot] for slot in others)), t.max_cases)
        for values in fillings:
            fixed = dict(zip(others, values, strict=True))
            invariance.append((t.name, [t.template.format_map({**fixed, t.vary: v}) for v in lex[t.vary]]))
    directional = []
    for t in suite.directional:
        # each base in its first two fillings, each with every filling of the added phrase
        pairs = [(text, text + add) for base in t.bases for text in expand(base, lex, 2) for add in expand(t.add, lex)]
        directional += [(t.name, before, after, t.direction, t.tolerance) for before, after in pairs[: t.max_cases * 2]]
    return {"mft": mft, "invariance": invariance, "directional": directional}


def run_behaviour_suite(
    positive_probability: Callable[[list[str]], np.ndarray], suite: BehaviourSuite | None = None
) -> dict[str, Any]:
    """Score every text of the suite once; pass rates per family and per test, a few failures each."""
    suite = suite or load_suite()
    cases = suite_texts(suite)
    texts = list(
        dict.fromkeys(
            [c[1] for c in cases["mft"]]
            + [t for c in cases["invariance"] for t in c[1]]
            + [t for c in cases["directional"] for t in c[1:3]]
        )
    )
    prob = dict(zip(texts, np.asarray(positive_probability(texts), dtype=float), strict=True))
    outcomes: dict[str, list[tuple[str, bool, str]]] = {family: [] for family in FAMILIES}
    for name, text, label in cases["mft"]:
        got = "positive" if prob[text] >= 0.5 else "negative"
        outcomes["mft"].append((name, got == label, f"{text!r}: expected {label}, got {got} ({prob[text]:.2f})"))
    for name, variants in cases["invariance"]:
        labels = {"positive" if prob[t] >= 0.5 else "negative" for t in variants}
        outcomes["invariance"].append(
            (name, len(labels) == 1, f"{variants[0]!r} and its variants get {sorted(labels)}")
        )
    for name, before, after, direction, tolerance in cases["directional"]:
        change = prob[after] - prob[before]
        passed = change <= tolerance if direction == "down" else change >= -tolerance
        outcomes["directional"].append(
            (name, passed, f"{after!r}: positive probability {change:+.3f} ({direction} expected)")
        )
    return summarise(suite.version, outcomes)


def summarise(version: int, outcomes: dict[str, list[tuple[str, bool, str]]]) -> dict[str, Any]:
    families = {}
    for family, results in outcomes.items():
        tests: dict[str, list[bool]] = {}
        for name, passed, _ in results:
            tests.setdefault(name, []).append(passed)
        families[family] = {
            "cases": len(results),
            "passed": int(sum(passed for _, passed, _ in results)),
            "pass_rate": round(float(np.mean([p for _, p, _ in results])), 4) if results else 1.0,
            "tests": {name: round(float(np.mean(flags)), 4) for name, flags in tests.items()},
            "failures": [detail for _, passed, detail in results if not passed][:5],
        }
    total = sum(f["cases"] for f in families.values())
    return {
        "suite_version": version,
        "cases": total,
        "pass_rate": round(sum(f["passed"] for f in families.values()) / total, 4) if total else 1.0,
        "families": families,
    }


def behaviour_tags(result: dict[str, Any]) -> dict[str, str]:
    """``behaviour.<family>`` pass rates (and the suite version) as version tags."""
    tags = {f"behaviour.{family}": f"{info['pass_rate']:.4f}" for family, info in result["families"].items()}
    return {**tags, "behaviour.suite_version": str(result["suite_version"])}


def failing_families(result: dict[str, Any], min_pass: float | None) -> list[str]:
    """The families whose pass rate is below ``min_pass`` (none when the criterion is off)."""
    if min_pass is None:
        return []
    return [
        f"{family} {info['pass_rate']:.2f}"
        for family, info in result["families"].items()
        if info["pass_rate"] < min_pass
    ]
