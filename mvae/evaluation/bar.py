"""The quality bar and whether a report meets it. Its figures live in bar.json beside this module, each
explained there: one short file says what the shipped model is held to, apart from the code that measures it."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import IMAGE_MODALITIES, INPUT_MODALITIES
from .coherence import direction_key, directions

BAR_FILE = Path(__file__).with_name("bar.json")

_BAR_DATA = json.loads(BAR_FILE.read_text(encoding="utf-8"))
FRECHET_REFERENCE: dict[str, float | None] = _BAR_DATA["frechet_reference"]
BAR: dict[str, float] = _BAR_DATA["bar"] | {
    f"frechet_max/{script}": reference * _BAR_DATA["frechet_max_of_reference"]
    for script, reference in FRECHET_REFERENCE.items() if reference is not None}
ROBUSTNESS_AIM: float = _BAR_DATA["robustness_aim"]
HELD_LINES: tuple[str, ...] = tuple(_BAR_DATA["held_lines"])
GENERATION_TEMPERATURE: float = _BAR_DATA["generation_temperature"]


def meets_bar(report: dict) -> dict[str, bool]:
    """Each line of the bar -> whether the report meets it; a metric the report lacks fails its line."""
    def get(section, key=None, missing=None):
        values = report.get(section, {})
        return values if key is None else values.get(key, missing)

    checks = {f"unimodal_accuracy/{m}": get("unimodal_accuracy", m, 0.0) >= BAR[f"unimodal_accuracy/{m}"]
              for m in INPUT_MODALITIES}
    checks["extra_accuracy/kannada/dig"] = \
        get("extra_accuracy", "kannada/dig", 0.0) >= BAR["extra_accuracy/kannada/dig"]
    multimodal = [v for k, v in get("accuracy").items() if "+" in k] or [0.0]
    checks["multimodal_accuracy"] = min(multimodal) >= BAR["multimodal_accuracy_min"]
    # One line per target and per directed pair, so that the lines a model meets can be held apart from
    # those it misses.
    for target in INPUT_MODALITIES:
        checks[f"label_coherence/{target}"] = get("label_coherence", target, 0.0) >= BAR["label_coherence_min"]
    for sources, target in [d for d in directions() if len(d[0]) == 1]:  # the six directed pairs
        key = direction_key(sources, target)
        checks[f"coherence/{key}"] = get("coherence", key, 0.0) >= BAR["coherence_min"]
    for s in IMAGE_MODALITIES:
        checks[f"diversity/{s}"] = get("diversity", s, 0.0) >= BAR["diversity_min"]
        checks[f"halftone/{s}"] = get("halftone", s, {}).get("ratio", float("inf")) <= BAR["halftone_ratio_max"]
        if f"frechet_max/{s}" in BAR:
            checks[f"frechet/{s}"] = get("frechet", s, float("inf")) <= BAR[f"frechet_max/{s}"]
        checks[f"live_dimensions/{s}"] = get("live_dimensions", s, 0) >= BAR["live_dimensions_min"]
    checks["robustness"] = bool(get("robustness")) and min(get("robustness").values()) >= ROBUSTNESS_AIM
    return checks
