"""The quality bar and whether a report meets it. The shared figures live in bar.json beside this module, each
explained there: one short file says what the shipped model is held to, apart from the code that measures it.
A modality's own lines (its least accuracy alone, on its extra set, its Fréchet reference) are in its
registry entry, so that a new modality brings its bar with it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from .. import registry
from .coherence import direction_key, directions

BAR_FILE = Path(__file__).with_name("bar.json")

_BAR_DATA = json.loads(BAR_FILE.read_text(encoding="utf-8"))


def extra_key(name: str) -> str | None:
    """A modality's held-out extra set as the report keys it ("<name>/<stem>"), None where it has none."""
    stem = getattr(registry.modality(name).source, "splits", {}).get("extra")
    return f"{name}/{stem}" if isinstance(stem, str) else None


def modality_lines() -> dict[str, float]:
    """Each registered modality's own lines of the bar, from its registry entry: every least accuracy
    alone, then every least accuracy on an extra set."""
    specs = registry.MODALITIES.values()
    unimodal = {f"unimodal_accuracy/{m.name}": m.bar["unimodal_accuracy"] for m in specs
                if "unimodal_accuracy" in m.bar}
    extra = {f"extra_accuracy/{extra_key(m.name)}": m.bar["extra_accuracy"] for m in specs
             if "extra_accuracy" in m.bar and extra_key(m.name)}
    return unimodal | extra


class LiveLines(Mapping):
    """A read-only mapping worked out from the registry each time it is read, so that a modality registered
    after this module was imported brings its lines with it."""

    def __init__(self, compute: Callable[[], dict[str, float]]):
        self._compute = compute

    def __getitem__(self, key: str) -> float:
        return self._compute()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._compute())

    def __len__(self) -> int:
        return len(self._compute())

    def __repr__(self) -> str:
        return repr(self._compute())


def _frechet_reference() -> dict[str, float]:
    return {name: spec.bar["frechet_reference"] for name, spec in registry.MODALITIES.items()
            if "frechet_reference" in spec.bar}


def _bar() -> dict[str, float]:
    return modality_lines() | _BAR_DATA["bar"] | {
        f"frechet_max/{script}": reference * _BAR_DATA["frechet_max_of_reference"]
        for script, reference in _frechet_reference().items()}


FRECHET_REFERENCE: Mapping[str, float] = LiveLines(_frechet_reference)
BAR: Mapping[str, float] = LiveLines(_bar)
ROBUSTNESS_AIM: float = _BAR_DATA["robustness_aim"]
HELD_LINES: tuple[str, ...] = tuple(_BAR_DATA["held_lines"])
GENERATION_TEMPERATURE: float = _BAR_DATA["generation_temperature"]


def meets_bar(report: dict) -> dict[str, bool]:
    """Each line of the bar -> whether the report meets it; a metric the report lacks fails its line."""
    checks = {line: _figure(report, *line.split("/", 1), 0.0) >= least
              for line, least in modality_lines().items()}
    multimodal = [v for k, v in report.get("accuracy", {}).items() if "+" in k] or [0.0]
    checks["multimodal_accuracy"] = min(multimodal) >= BAR["multimodal_accuracy_min"]
    # One line per target and per directed pair, so that the lines a model meets can be held apart from
    # those it misses.
    for target in registry.names():
        checks[f"label_coherence/{target}"] = _figure(report, "label_coherence", target, 0.0) \
            >= BAR["label_coherence_min"]
    for sources, target in [d for d in directions(registry.names()) if len(d[0]) == 1]:  # the directed pairs
        key = direction_key(sources, target)
        checks[f"coherence/{key}"] = _figure(report, "coherence", key, 0.0) >= BAR["coherence_min"]
    for script in registry.names(registry.IMAGE):
        checks |= _image_lines(report, script)
    checks |= intelligibility_lines(report)
    robustness = report.get("robustness", {})
    checks["robustness"] = bool(robustness) and min(robustness.values()) >= ROBUSTNESS_AIM
    return checks


def intelligibility_lines(report: dict) -> dict[str, bool]:
    """Each speech judge's intelligibility ratio of every direction from the label or from one modality; a
    judge that reads no real recording right has no ratio (None), and misses its lines."""
    lines = {}
    for judge, section in report.get("speech_judges", {}).items():
        for key, value in section.get("intelligibility_ratio", {}).items():
            if "+" not in key.partition("->")[0]:
                lines[f"intelligibility/{judge}/{key}"] = value is not None and \
                    value >= BAR["intelligibility_ratio_min"]
    return lines


def _figure(report: dict, section: str, key: str, missing):
    return report.get(section, {}).get(key, missing)


def _image_lines(report: dict, script: str) -> dict[str, bool]:
    """The lines of what a model generates in one script."""
    lines = {
        f"diversity/{script}": _figure(report, "diversity", script, 0.0) >= BAR["diversity_min"],
        f"halftone/{script}": _figure(report, "halftone", script, {}).get("ratio", float("inf"))
        <= BAR["halftone_ratio_max"]}
    if f"frechet_max/{script}" in BAR:
        lines[f"frechet/{script}"] = _figure(report, "frechet", script, float("inf")) <= BAR[f"frechet_max/{script}"]
    lines[f"live_dimensions/{script}"] = _figure(report, "live_dimensions", script, 0) >= BAR["live_dimensions_min"]
    return lines
