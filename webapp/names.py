"""The words and colours the app's pages show: display names, the evaluator's keys in words, the sweep's
parameters, and the sentences built from them. Text only: no widget, no figure, no model call."""

from __future__ import annotations

import numpy as np

import mvae
from mvae import registry
from mvae.config import LABEL

# What the pages show beside the modalities' own names and colours (mvae.registry): the prior, the product of
# the experts and the label are no modalities.
OTHER_NOUNS = {"prior": "Prior N(0, I)", "fused": "Fused (product)"}

# Okabe-Ito colours: distinguishable with colour-blindness, readable on light and dark backgrounds.
OTHER_COLOURS = {"prior": "#999999", "fused": "#D55E00"}

# Tableau 10: ten hues that stay distinct on a white and on a near-black background.
DIGIT_COLOURS = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7",
                 "#9C755F", "#BAB0AC"]

OTHER_TITLES = {LABEL: "the label"}


def noun(name: str) -> str:
    """What a user gives of a modality ("Farsi drawing"), or the prior's or the product's name."""
    return registry.modality(name).noun if name in registry.MODALITIES else OTHER_NOUNS.get(name, name)


def colour(name: str) -> str:
    return registry.modality(name).colour if name in registry.MODALITIES else OTHER_COLOURS[name]


def glyph(name: str, digit: int) -> str:
    """The modality's own Unicode digit, or "" when its script has none."""
    glyphs = registry.modality(name).glyphs
    return glyphs[digit] if digit < len(glyphs) else ""


BAR_LINES = {"multimodal_accuracy": "accuracy from two or three inputs",
             # reports written before the bar had one line per generated target
             "label_coherence": "coherence of what the label generates",
             "coherence": "coherence from one modality to another",
             "robustness": "stand-ins for real users"}

BAR_SECTIONS = {"unimodal_accuracy": "accuracy from {} alone", "diversity": "diversity of generated {} digits",
                "halftone": "half-tone share of generated {} digits",
                "frechet": "Fréchet distance of generated {} digits",
                "live_dimensions": "live latent dimensions for {}",
                "extra_accuracy": "accuracy on {}"}

# Counts in words, as the pages write them; larger counts are written in digits.
COUNTS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
          11: "eleven", 12: "twelve"}


def count_word(n: int) -> str:
    return COUNTS.get(n, str(n))


def home_accuracy(modalities) -> dict[str, str]:
    """The home page's accuracy metrics, keyed like eval.json's: each input alone, then all of them together.
    Short labels under one heading: a metric cuts its label at the column's edge, and "Accuracy from farsi +
    kannada + speech" did not fit a quarter of the page."""
    labels = {name: f"{_capitalised(modality_name(name))} alone" for name in modalities}
    if len(modalities) > 1:
        labels["+".join(modalities)] = "Both" if len(modalities) == 2 else f"All {count_word(len(modalities))}"
    return labels


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


SWEEP_PARAMS = {"latent_dim": "latent size", "hidden": "width", "label_weight": "label weight",
                "speech_weight": "speech weight", "beta": "β", "beta_warmup_epochs": "β warm-up (epochs)",
                "lr": "learning rate", "aug_strength": "speech augmentation", "image_aug": "digit augmentation"}


def modality_name(name: str) -> str:
    """A modality's name in a sentence (its entry's title), or the label's."""
    return OTHER_TITLES.get(name) or registry.title(name)


def inputs_name(key: str) -> str:
    """An input subset or a direction as a person reads it: 'farsi+speech->kannada' is 'Farsi + speech → Kannada'."""
    given, arrow, made = key.partition("->")
    text = " + ".join(modality_name(m) for m in given.split("+"))
    return f"{text} → {modality_name(made)}" if arrow else text


def extra_set_name(key: str) -> str:
    """An extra test set (eval.json's "<modality>/<file stem>") by the name its modality's entry gives it."""
    name, _, stem = key.partition("/")
    source = registry.MODALITIES[name].source if name in registry.MODALITIES else None
    extra_name = getattr(source, "extra_name", "")
    if extra_name and source.splits.get("extra") == stem:
        return extra_name
    return key.replace("/", " ")


def bar_line_name(key: str) -> str:
    """A line of the evaluator's quality bar (a key of eval.json's meets_bar) in words."""
    if key in BAR_LINES:
        return BAR_LINES[key]
    section, _, rest = key.partition("/")
    if section == "label_coherence" and rest:
        return f"coherence of label → {modality_name(rest)}"
    if section == "coherence" and rest:
        return f"coherence of {inputs_name(rest)}"
    if section == "intelligibility" and rest:
        judge, _, direction = rest.partition("/")
        return f"intelligibility of {inputs_name(direction)} to the {registry.judge_title(judge)}"
    if section == "extra_accuracy" and rest:
        return BAR_SECTIONS[section].format(extra_set_name(rest))
    if section in BAR_SECTIONS and rest:
        return BAR_SECTIONS[section].format(modality_name(rest))
    return key.replace("_", " ").replace("/", ", ")


def sweep_table(trials: list[dict]) -> list[dict]:
    """The best trials side by side, one row per parameter: nine parameters across did not fit the page.
    Three significant digits, so that a learning rate of 0.0011299721774595118 reads 0.00113."""
    names = list(dict.fromkeys(k for t in trials for k in t.get("params", {})))
    rows = [{"": "objective", **{f"trial {t.get('number')}": f"{t['value']:.2%}" if t.get("value") is not None else "—"
                                  for t in trials}}]
    for name in names:
        rows.append({"": SWEEP_PARAMS.get(name, name),
                     **{f"trial {t.get('number')}": f"{t['params'][name]:.3g}" if name in t.get("params", {}) else "—"
                        for t in trials}})
    return rows


# The sweep's parameters that set the model's shape, and where the shipped model keeps each; the others
# (weights, learning rate, augmentation) change how it is trained, not what it is.
SWEEP_SHAPE = {"latent_dim": lambda cfg: cfg.latent_dim, "hidden": lambda cfg: cfg.hidden}

# Settings of a whole model configuration worth naming when a sweep records the one its trials started from.
SWEEP_BASE_KEYS = {"architecture": "architecture", "style_dim": "style latent size", "image_decoder": "image decoder",
                   "speech_likelihood": "speech likelihood"}


def sweep_differences(sweep: dict, cfg) -> list[str]:
    """How the sweep's models differ from the shipped configuration `cfg`, one phrase per setting: the shape
    parameters its trials tried and the shipped value is not among, then any recorded base setting that differs."""
    trials = sweep.get("best_trials") or sweep.get("trials") or []  # the table shows the best ones
    phrases = []
    for name, shipped in SWEEP_SHAPE.items():
        tried = sorted({t["params"][name] for t in trials if name in t.get("params", {})})
        if tried and shipped(cfg) not in tried:
            own = shipped(cfg)
            if name == "latent_dim" and getattr(cfg, "style_dim", 0):
                own = f"{own} shared + {cfg.style_dim} style per input"
            phrases.append(f"{SWEEP_PARAMS.get(name, name)} {_either(tried)} "
                           f"(shipped: {own})")
    base = sweep.get("model_config") or {}
    for key, words in SWEEP_BASE_KEYS.items():
        if key in base and hasattr(cfg, key) and base[key] != getattr(cfg, key):
            phrases.append(f"{words} {base[key]} (shipped: {getattr(cfg, key)})")
    return phrases


def _either(values: list) -> str:
    words = [f"{v:g}" for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def sweep_note(sweep: dict, cfg) -> str:
    """A sentence that says whether the sweep's trials are models like the shipped one."""
    differences = sweep_differences(sweep, cfg)
    unknown = ("" if sweep.get("model_config") else " Its results record only the parameters it varied, so the "
               "trials' other settings are not known from them.")
    if not differences:
        return "The sweep's best trials have the shipped model's shape." + unknown
    return ("These trials are not models like the shipped one: " + "; ".join(differences) + ". They show what mattered "
            "among the sweep's own models, not how well the shipped one does." + unknown)


def quality_bar_lines(meets: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The names of the lines of the bar that are met, and of those missed."""
    return ([bar_line_name(k) for k, ok in meets.items() if ok],
            [bar_line_name(k) for k, ok in meets.items() if not ok])


STYLE_SAMPLES = 6

# Voices cost a Griffin-Lim each and a player's width: three fit one row, and three already show the spread.
STYLE_VOICES = 3


def style_sentence(voiced: bool) -> str:
    """What the styles row shows, in numbers that match it: every column a new hand, and (when speech was
    not given) the voices of the first STYLE_VOICES columns only."""
    hands = "The digit stays; each column draws it in a new hand"
    if not voiced:
        return hands + "."
    return hands + (f" and a new voice. The first {STYLE_VOICES} voices are below"
                    if STYLE_VOICES < STYLE_SAMPLES else " and a new voice, below") + "."


def latent_parts(pipe: mvae.Pipeline) -> dict[str, str]:
    """The parts of the full latent a person can move, with their display names."""
    return {part: "shared (the digit)" if part == "shared" else f"{modality_name(part)} style"
            for part in pipe.latent_layout}


def dimension_name(pipe: mvae.Pipeline, dim: int) -> str:
    for part, where in pipe.latent_layout.items():
        if where.start <= dim < where.stop:
            return f"{'shared' if part == 'shared' else modality_name(part).lower() + ' style'} {dim - where.start}"
    return f"dim {dim}"


DIGIT_SPECTROGRAMS = {"real": "real", "means": "at the means", "sampled": "T = 1"}


def digit_spectrograms_caption(mels: dict[str, list[np.ndarray]]) -> str:
    """What the report's spectrograms are, and what to look for in them."""
    shown = ", ".join(f"**{DIGIT_SPECTROGRAMS[k]}**" for k in DIGIT_SPECTROGRAMS if k in mels)
    return (f"Log-mel spectrograms (time →, pitch ↑) of each digit: {shown}. Real speech shows harmonics "
            "(horizontal stripes), formants that move and a clear onset; a smeared burst is not speech.")


def latent_sentence(cfg) -> str:
    """The model card's account of the latent: the shared part and, when there are any, the styles."""
    shared = (f"a {cfg.latent_dim}-dimensional shared latent (which digit), fused by the product of experts")
    if not cfg.style_dim:
        return f"PoE-MVAE with {shared}"
    return (f"PoE-MVAE with {shared}, and a {cfg.style_dim}-dimensional private style latent per input (how "
            "this one is drawn or said): a missing modality is drawn in a style from its prior, so it varies")
