"""The peer benchmark's table and README section: one row per contender (the spread over seeds where there
are several), a sentence for each peer that could not run, and, in plain words, every column where the
project's shipped recipe is not first."""

from __future__ import annotations

import re

import numpy as np

from benchmarks.peer_models import CONTENDERS, PROJECT
from mvae import registry
from mvae.evaluation.coherence import direction_key, directions

SHIPPED = "shipped recipe"
DEFAULT_BUDGET_MIN = 30.0  # the recipe's budget, benchmarks.peers' default
DEFAULT_COMMAND = "python -m benchmarks.peers --data-dir DATA_DIR --seeds 2 --readme README.md"


def pending(results) -> list[str]:
    """The sentence a reduced budget owes: the run at the recipe's budget has yet to be made."""
    if results["budget_minutes"] >= DEFAULT_BUDGET_MIN and results["seeds"] > 1:
        return []
    return ["", f"This run is smaller than the benchmark's full one ({DEFAULT_BUDGET_MIN:g} min a model, two "
                f"seeds), which is pending: `{DEFAULT_COMMAND}` (about "
                f"{2 * len(CONTENDERS) * DEFAULT_BUDGET_MIN / 60 + 1:.0f} hours on 2 CPU cores)."]


def unfinished(results) -> list[str]:
    """The sentence a run stopped part-way owes: the rows still to come, and how to go on with them."""
    done = {(r["model"], r["seed"]) for r in results["rows"]}
    missing = [f"{c['model']} (seed {seed})" for seed in range(results["seeds"]) for c in results["contenders"]
               if (c["model"], seed) not in done]
    if not missing:
        return []
    return ["", f"This run is not finished: {len(done)} of {len(done) + len(missing)} rows are in, and "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} still to run. Each row is kept as it "
                f"completes; `{results['command']} --resume` trains only the missing ones."]


LOAD = re.compile(r", load average [0-9.]+ at the start")


def machines(results) -> str:
    """Where the run ran: the machine of its last sitting with the load average it started under, and each
    other machine where a resumed run trained rows elsewhere."""
    kinds = list(dict.fromkeys(LOAD.sub("", r["machine"]) for r in results["rows"] if "machine" in r))
    others = [k for k in kinds if k != LOAD.sub("", results["machine"])]
    if not others:
        return f"machine: {results['machine']}"
    return f"machine: {results['machine']}; some rows were trained on " + " and on ".join(others)


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _closeness_to_one(value):
    return None if value is None else -abs(1.0 - value)


def halftone_ratio(section: dict) -> float | None:
    """Generated over real half-tone share; none where the real digits have no half-tones to compare with."""
    share = section["halftone"]
    return share["generated"] / share["real"] if share["real"] > 0 else None


# Columns: (header, figure of a row, how to rank it: a larger key is better, decimals).
def _speech(key, judge):
    return lambda row: row["coherence"][key][registry.SPEECH].get(judge)


def columns(judges: list[str]) -> list[tuple]:
    cols = [("samples/s", lambda r: r["samples_per_second"], lambda v: v, 0),
            ("steps", lambda r: r["steps"], None, 0),
            ("accuracy, linear probe", lambda r: _mean(r["accuracy"]["probe"].values()), lambda v: v, 3),
            ("accuracy, label head", lambda r: _mean(r["accuracy"]["head"].values()), None, 3),
            ("coherence into digits, T=1", lambda r: r["coherence"]["t1"]["digits"], lambda v: v, 3),
            ("coherence into digits, means", lambda r: r["coherence"]["means"]["digits"], lambda v: v, 3)]
    for judge in judges:
        cols += [(f"into speech by `{judge}`, T=1", _speech("t1", judge), lambda v: v, 3),
                 (f"into speech by `{judge}`, means", _speech("means", judge), lambda v: v, 3)]
    cols += [("diversity (1 = real)", lambda r: _mean(s["diversity"] for s in r["generation"].values()),
              _closeness_to_one, 2),
             ("half-tone ratio (1 = real)",
              lambda r: _mean(halftone_ratio(s) for s in r["generation"].values()), _closeness_to_one, 2),
             ("Fréchet distance", lambda r: _mean(s["frechet"] for s in r["generation"].values()), lambda v: -v, 1)]
    return cols


def speech_judges(rows) -> list[str]:
    for row in rows:
        if "coherence" in row:
            return list(row["coherence"]["t1"][registry.SPEECH])
    return []


def cell(rows, figure, decimals: int) -> tuple[float | None, str]:
    values = [v for v in (figure(r) for r in rows) if v is not None]
    if not values:
        return None, "–"
    middle = float(np.mean(values))
    text = f"{middle:.{decimals}f}"
    if len(values) > 1:
        text += f" ({min(values):.{decimals}f}–{max(values):.{decimals}f})"
    return middle, text


def by_model(results) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in results["rows"]:
        out.setdefault(row["model"], []).append(row)
    return out


def table(results) -> tuple[str, dict]:
    """The Markdown table, and each ranked column's mean per model that ran."""
    models = by_model(results)
    ran = {m: [r for r in rows if "error" not in r] for m, rows in models.items()}
    cols = columns(speech_judges(results["rows"]))
    lines = ["| model | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    means: dict[str, dict[str, float]] = {c[0]: {} for c in cols if c[2]}
    for model, rows in ran.items():
        if not rows:
            continue
        cells = []
        for header, figure, rank, decimals in cols:
            middle, text = cell(rows, figure, decimals)
            cells.append(text)
            if rank and middle is not None:
                means[header][model] = middle
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines), means


def direction_table(results, key: str = "means") -> str:
    """Coherence of each one-modality direction at the means (the judge of every target), one column per
    contender that ran: the issue's own comparison, side by side."""
    models = {m: [r for r in rows if "error" not in r] for m, rows in by_model(results).items()}
    models = {m: rows for m, rows in models.items() if rows}
    if not models:
        return ""
    first = next(iter(models.values()))[0]["coherence"][key]["directions"]
    if not any(first.values()):
        return ""
    judge = max(first, key=lambda j: len(first[j]))
    wanted = [direction_key(s, t) for s, t in directions() if len(s) == 1 and direction_key(s, t) in first[judge]]
    lines = ["| direction | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for d in wanted:
        cells = [cell(rows, lambda r, d=d: r["coherence"][key]["directions"][judge].get(d), 3)[1]
                 for rows in models.values()]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def behind(results, means) -> list[str]:
    """A sentence for every column where a peer beats the shipped recipe, and for every column whose first
    place is not the project's."""
    ranks = {c[0]: c[2] for c in columns(speech_judges(results["rows"])) if c[2]}
    family = {row["model"]: row["family"] for row in results["rows"]}
    out = []
    for header, values in means.items():
        if not values:
            continue
        best = max(values, key=lambda m: ranks[header](values[m]))
        if SHIPPED in values:
            ahead = [m for m in values if family[m] != PROJECT and ranks[header](values[m]) > ranks[header](
                values[SHIPPED])]
            if ahead:
                out.append(f"- **{header}**: the shipped recipe ({values[SHIPPED]:.3g}) falls behind "
                           + ", ".join(f"{m} ({values[m]:.3g})" for m in ahead) + ".")
                continue
        if family[best] != PROJECT:
            out.append(f"- **{header}**: {best} is first ({values[best]:.3g}); the project is not.")
    return out


def failures(results) -> list[str]:
    out = []
    for model, rows in by_model(results).items():
        failed = [r for r in rows if "error" in r]
        for row in failed:
            out.append(f"- {model} (seed {row['seed']}) could not run on this data: `{row['error']}`")
    return out


def readme_section(results) -> str:
    text, means = table(results)
    quick = " (`--quick`: a smoke run, not a result)" if results["quick"] else ""
    steps = f", at most {results['max_steps']} steps" if results["max_steps"] else ""
    lines = [f"Budget: {results['budget_minutes']:g} min of training per model and seed{steps}{quick}; "
             f"seeds: {results['seeds']} (a cell with several gives the mean and the range); "
             f"{results['threads']} torch thread(s); {machines(results)}.", "",
             f"Command: `{results['command']}`. Judged on {results['sizes']['eval_pairs']} test pairs "
             f"({results['sizes']['speech_pairs']} for speech targets); coherence is the mean over every "
             "direction between modalities (no contender is given the label); diversity, half-tones and the "
             "Fréchet distance are of digits generated at T=1 from the other modalities. Samples per second "
             "are those of a machine that other jobs may share (its load average at the start is above).",
             *pending(results), *unfinished(results), "", text, ""]
    directed = direction_table(results)
    if directed:
        lines += ["Coherence of each direction from one modality, at the means:", "", directed, ""]
    lost = behind(results, means)
    compared = any(r["family"] != PROJECT and "error" not in r for r in results["rows"])
    lines += ["Where the project is not first:", "", *lost] if lost else \
        ["The shipped recipe is first, or ahead of every peer, in every column."] if compared else \
        ["No peer has a row yet, so nothing is compared."]
    broken = failures(results)
    if broken:
        lines += ["", "Peers without a row:", "", *broken]
    return "\n".join(lines) + "\n"
