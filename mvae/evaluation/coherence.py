"""Coherence: whether what a model generates in one modality, from others or from the label, shows the
digit it was given, as an independent judge reads it; and each speech judge's section of the report (every
direction into speech, and each as a ratio over the same judge's reading of real speech)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import registry
from ..config import LABEL, N_CLASSES
from ..data.paired import Bank, PairedDataset, Pairs
from ..kinds import kind
from ..model.model import MVAE
from ..model.poe import subset_key, subsets
from ..signals.audio import AudioFrontEnd
from .judges import Judge, accuracy, resynthesised

# The key, in a speech judge's section of eval.json, of its reading of its target's real test recordings (named
# when FSDD was the one recorded set; kept, so that every report reads alike).
REAL_TEST = "real_fsdd_test"


def directions(names=None) -> list[tuple[tuple[str, ...], str]]:
    """(sources, target): each modality to each other, and each subset to each modality outside it (all the
    registered modalities where no names are given)."""
    names = registry.names() if names is None else tuple(names)
    return [(s, t) for s in subsets(names) if len(s) < len(names) for t in names if t not in s]


def direction_key(sources, target) -> str:
    return f"{subset_key(sources)}->{target}"


def coherence(generate: Callable[[dict, str], torch.Tensor], judge: Callable[[str, torch.Tensor], torch.Tensor],
              batches: Iterable[dict], wanted) -> dict[str, float]:
    """Fraction of pairs whose generated target the target's judge assigns the pair's label."""
    return coherence_by(generate, {"": judge}, batches, wanted)[""]


def coherence_by(generate, judges: dict[str, Callable], batches: Iterable[dict], wanted) -> dict[str, dict[str, float]]:
    """`coherence` by several judges of the same generated items (each made once): judge name -> direction ->
    fraction. A judge that returns None for a target does not read it, and its figures leave that target out."""
    correct: dict[str, dict[str, int]] = {name: {} for name in judges}
    seen = 0
    for batch in batches:
        for sources, target in wanted:
            made = generate({k: batch[k] for k in sources}, target)
            for name, judge in judges.items():
                predicted = judge(target, made)
                if predicted is not None:
                    key = direction_key(sources, target)
                    correct[name][key] = correct[name].get(key, 0) + int((predicted == batch[LABEL]).sum())
        seen += len(batch[LABEL])
    return {name: {direction_key(*d): counts[direction_key(*d)] / seen for d in wanted
                   if direction_key(*d) in counts} for name, counts in correct.items()}


class ModelGenerator:
    """Generates a target modality from the given sources through MVAE.generate at a temperature: the
    shared latent from the fused posterior, the target's style from its prior (0 decodes the means).
    A vocoded kind (speech) comes back after a Griffin-Lim round trip, as it reaches the ear."""

    def __init__(self, model: MVAE, front_end: AudioFrontEnd, resynthesise: bool = True, temperature: float = 0.0,
                 seed: int = 0):
        self.model, self.front_end, self.resynthesise = model, front_end, resynthesise
        self.temperature, self.generator = temperature, torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, sources: dict, target: str) -> torch.Tensor:
        self.model.eval()
        out = self.model.generate(sources, [target], self.temperature,
                                  self.generator)[target].cpu()
        if kind(target).vocoded and self.resynthesise:
            out = resynthesised(Bank(out, np.zeros(len(out))), self.front_end).items
        return out


def each_once(rows: np.ndarray, order: np.ndarray, most: int) -> np.ndarray:
    """Pairs, at most `most`, in which each item of a bank (`rows`: its row in every pair) appears once: its
    first pair in `order` (a random sample), then, for the items `order` does not reach, its first pair at
    all. With `most` at least the bank's size, every item is there."""
    first: dict[int, int] = {}
    for i in (*order, *range(len(rows))):
        first.setdefault(int(rows[i]), int(i))
    return np.array(list(first.values())[:most], dtype=np.int64)


def class_labels(per_class: int) -> torch.Tensor:
    """per_class copies of each digit, digit-major."""
    return torch.arange(N_CLASSES).repeat_interleave(per_class)


def label_coherence(generate: ModelGenerator, judge, targets, per_class: int) -> dict[str, float]:
    """Fraction of digits generated from the label alone that the target's judge reads as that label."""
    return label_coherence_by(generate, {"": judge}, targets, per_class)[""]


def label_coherence_by(generate, judges: dict[str, Callable], targets, per_class: int) -> dict[str, dict[str, float]]:
    """`label_coherence` by several judges of the same generated items; a judge that returns None for a target
    does not read it."""
    labels = class_labels(per_class)
    out: dict[str, dict[str, float]] = {name: {} for name in judges}
    for t in targets:
        made = generate({LABEL: labels}, t)
        for name, judge in judges.items():
            predicted = judge(t, made)
            if predicted is not None:
                # A count over the total, not a float32 mean: 1,900 of 2,000 is 0.95, which meets a bar of 95 %.
                out[name][t] = int((predicted == labels).sum()) / len(labels)
    return out


def speech_directions(figures: dict[str, dict], suffix: str, target: str) -> dict[str, float]:
    """One speech judge's figure for each direction into the target, at one temperature (`suffix`): from the
    label, from each other input and subset of inputs, and from the target itself in its own style (the
    reconstruction)."""
    out = {}
    if target in figures.get(f"label_coherence{suffix}", {}):
        out[direction_key((LABEL,), target)] = figures[f"label_coherence{suffix}"][target]
    out |= {k: v for k, v in figures.get(f"coherence{suffix}", {}).items() if k.endswith(f"->{target}")}
    if target in figures.get(f"reconstruction_coherence{suffix}", {}):
        out[direction_key((target,), target)] = figures[f"reconstruction_coherence{suffix}"][target]
    return out


def speech_judge_section(figures: dict[str, dict], raw: float, vocoded: float, suffixes, target: str) -> dict:
    """A speech judge's figures into the target and each as an intelligibility ratio: over what the same judge
    reads on the target's real test recordings through the same front end and vocoder."""
    def over(value, reference):  # a judge that reads no real clip right has no reference: no ratio (null)
        return value / reference if reference > 0 else None

    section = {REAL_TEST: {"raw": raw, "vocoded": vocoded, "vocoder_ratio": over(vocoded, raw)}}
    for suffix in suffixes:
        directed = speech_directions(figures, suffix, target)
        section[f"directions{suffix}"] = directed
        section[f"intelligibility_ratio{suffix}"] = {k: over(v, vocoded) for k, v in directed.items()}
    return section


def temperature_suffix(index: int, temperature: float) -> str:
    """How the report's keys name a temperature: the bar's (the first) bare, the posterior means (0)
    `_at_means`, any other `_at_<T>`."""
    return "" if index == 0 else ("_at_means" if temperature == 0 else f"_at_{temperature:g}")


class CoherenceRun:
    """Coherence of one model on the test pairs, by every judge at once. Targets of a kind that is not vocoded
    (digits) are scored over every test pair; vocoded targets (speech) over a sample of `speech_pairs` (each
    costs a Griffin-Lim resynthesis), and from the label over as many items.

    Every judge of a vocoded target reads the same generated items. The figures of each target's own judge
    (the one named after it) are the report's coherence sections; they are filed under `own`, the name of a
    vocoded target's own judge where the model has one (the speech judge, as reports and benchmarks key
    them), else of the first target's. The other judges' figures (of the targets they read only) go to their
    own section."""

    def __init__(self, model: MVAE, front_end: AudioFrontEnd, judges: dict[str, Judge], test: PairedDataset,
                 pairs: Pairs, batch_size: int, speech_pairs: int, progress: bool):
        self.model, self.front_end, self.judges, self.test, self.pairs = model, front_end, judges, test, pairs
        self.batch_size, self.progress = batch_size, progress
        self.vocoded = [t for t in model.input_names if kind(t).vocoded]
        # Judge -> the vocoded target whose section it has (a judge that reads several has the first's).
        self.speech_judges: dict[str, str] = {}
        for t in self.vocoded:
            for j in registry.modality(t).reads:
                if j in judges:
                    self.speech_judges.setdefault(j, t)
        self.own = ([t for t in self.vocoded if t in judges] or list(model.input_names))[0]
        self.judges_by = {self.own: self.judge} | {j: self.other_judge(j) for j, t in self.speech_judges.items()
                                                   if j != t}
        self.order = np.random.default_rng(0).permutation(len(pairs))[:speech_pairs]
        # A recording decoded again in its own voice is compared with the same recordings, each once: drawn
        # with the pairs, a clip would count as often as it happened to be drawn, and the reference reads
        # every clip once.
        self.each_once = {t: each_once(pairs.index[t], self.order, speech_pairs) for t in self.vocoded}
        self.speech_per_class = max(1, speech_pairs // N_CLASSES)

    def judge(self, target: str, made: torch.Tensor) -> torch.Tensor:
        """The target's own judge's reading."""
        return self.judges[target].predict(made)

    def other_judge(self, name: str) -> Callable:
        """The named judge's reading of the targets it reads (None for the others)."""
        return lambda target, made: self.judges[name].predict(made) if name in registry.modality(target).reads \
            else None

    def split(self, items, target_of) -> tuple[list, list]:
        """(those whose target is not vocoded, those whose target is), each in the order given."""
        return ([x for x in items if target_of(x) not in self.vocoded],
                [x for x in items if target_of(x) in self.vocoded])

    def scored(self, generate, wanted, desc: str, order=None) -> dict[str, dict[str, float]]:
        """Coherence of each (sources, target) by each judge; vocoded targets over the pairs `order` names
        (default: the run's sample)."""
        order = self.order if order is None else order
        test, pairs, batch_size = self.test, self.pairs, self.batch_size
        batches = tqdm((b for _, b in test.batches(pairs, batch_size)), desc=desc, disable=not self.progress,
                       leave=False, total=-(-len(pairs) // batch_size))
        plain, vocoded = self.split(wanted, lambda d: d[1])
        seen = coherence_by(generate, {self.own: self.judge}, batches, plain)
        sampled = (test.batch(pairs, order[j:j + 250]) for j in range(0, len(order), 250))
        heard = coherence_by(generate, self.judges_by, sampled, vocoded)
        return {n: seen.get(n, {}) | heard[n] for n in self.judges_by}

    def directed(self, generate, wanted, desc: str, order=None) -> dict[str, dict[str, float]]:
        """Judge name -> direction -> coherence, in the order of `wanted` (the table's)."""
        scores = self.scored(generate, wanted, desc, order)
        keys = [direction_key(*d) for d in wanted]
        return {n: {k: by[k] for k in keys if k in by} for n, by in scores.items()}

    def from_label(self, generate, temperature: float, per_class: int) -> dict[str, dict[str, float]]:
        """Judge name -> target -> coherence of what is generated from the label alone."""
        plain, vocoded = self.split(self.model.input_names, lambda t: t)
        # At the means every digit of a class decodes alike, so one per class says all.
        seen = label_coherence_by(generate, {self.own: self.judge}, plain, per_class if temperature else 1)
        heard = label_coherence_by(generate, self.judges_by, vocoded, self.speech_per_class if temperature else 1)
        return {n: seen.get(n, {}) | heard[n] for n in self.judges_by}

    def at_temperature(self, temperature: float, seed: int, own_seed: int, per_class: int) -> dict[str, dict]:
        """Judge name -> coherence, label coherence and reconstruction coherence at one temperature."""
        names = self.model.input_names
        generate = ModelGenerator(self.model, self.front_end, temperature=temperature, seed=seed)
        coherent = self.directed(generate, directions(names), f"coherence T={temperature:g}")
        from_label = self.from_label(generate, temperature, per_class)
        # Each modality from itself, in its own style: how readable its decoder makes what it was given is, in
        # practice, the ceiling of the directions that end in it. A random stream of its own leaves the
        # figures above as they were.
        own = ModelGenerator(self.model, self.front_end, temperature=temperature, seed=own_seed)
        desc = f"reconstruction T={temperature:g}"
        itself = self.directed(own, [((n,), n) for n in names if n not in self.vocoded], desc)
        for t in self.vocoded:
            for judge, by in self.directed(own, [((t,), t)], desc, self.each_once[t]).items():
                itself.setdefault(judge, {}).update(by)
        return {n: {"coherence": coherent[n], "label_coherence": from_label[n],
                    "reconstruction_coherence": {m: itself[n][direction_key((m,), m)] for m in names
                                                 if direction_key((m,), m) in itself[n]}}
                for n in self.judges_by}

    def speech_judge_sections(self, figures: dict[str, dict], suffixes) -> dict[str, dict]:
        """Each speech judge's section, against its reading of its target's real test recordings as recorded
        (the front end's log-mel) and through the same vocoder as generated speech (log-mel -> Griffin-Lim ->
        log-mel)."""
        real = {t: self.test.banks[t] for t in self.vocoded}
        vocoded = {t: resynthesised(bank, self.front_end) for t, bank in real.items()}
        return {j: speech_judge_section(figures[self.own if j == t else j], accuracy(self.judges[j], real[t]),
                                        accuracy(self.judges[j], vocoded[t]), suffixes, t)
                for j, t in self.speech_judges.items()}


def coherence_figures(run: CoherenceRun, per_class: int, temperatures) -> dict:
    """The report's coherence sections at each temperature (the first is the bar's), the speech judges'
    sections and how many items were scored."""
    figures: dict[str, dict] = {n: {} for n in run.judges_by}
    suffixes = [temperature_suffix(i, t) for i, t in enumerate(temperatures)]
    for i, (temperature, suffix) in enumerate(zip(temperatures, suffixes)):
        by_judge = run.at_temperature(temperature, seed=i, own_seed=len(temperatures) + i, per_class=per_class)
        for n, sections in by_judge.items():
            figures[n] |= {f"{section}{suffix}": values for section, values in sections.items()}
    out = dict(figures[run.own])
    if run.speech_judges:
        out["speech_judges"] = run.speech_judge_sections(figures, suffixes)
    out["coherence_pairs"] = {"image_targets": len(run.pairs), "speech_target": len(run.order),
                              "speech_itself": {t: len(rows) for t, rows in run.each_once.items()},
                              "label_per_class": per_class, "label_to_speech_per_class": run.speech_per_class}
    return out
