"""The evaluator's words: the report's Markdown table, the comparison table of several checkpoints, a
checkpoint's architecture in a few words, and the swap of a generated block in a Markdown file."""

from __future__ import annotations

from .. import registry
from ..kinds import BY_KIND, kind
from .bar import BAR, ROBUSTNESS_AIM
from .coherence import REAL_TEST
from .judges import extra_names, judge_title, judged_modality

# What a judge's own accuracy on each set is called in the table; the extra sets' names come from the registry.
JUDGED = {"test_accuracy": "test", "griffin_lim_test_accuracy": "test after Griffin-Lim",
          "held_out_voices_accuracy": "held-out synthetic voices",
          "held_out_voices_griffin_lim_accuracy": "held-out synthetic voices after Griffin-Lim"}
COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def pct(x) -> str:
    return f"{100 * x:.2f} %"


def mark(ok: bool) -> str:
    """Words, not emoji: a machine without an emoji font (the app's Report, a terminal) shows ✅ as a box."""
    return "met" if ok else "**missed**"


def at_least(value, bar, fmt=pct) -> str:
    return f"{fmt(value)}, {mark(value >= bar)} (bar ≥ {fmt(bar)})"


def at_most(value, bar, fmt) -> str:
    return f"{fmt(value)}, {mark(value <= bar)} (bar ≤ {fmt(bar)})"


def arrow(key: str) -> str:
    return key.replace("->", " → ").replace("+", " + ")


def in_words(n: int) -> str:
    return COUNTS[n] if 0 <= n < len(COUNTS) else str(n)


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def judged(judge: str) -> tuple[str, str]:
    """(the test set, the modality's title) of what a speech judge reads, as the table names them."""
    spec = judged_modality(judge)
    return (spec.test_set, spec.title) if spec else ("test", judge)


def own_style(key: str) -> bool:
    """Whether a direction is a modality from itself (the reconstruction, its own style kept)."""
    sources, _, target = key.partition("->")
    return sources == target


def generation_rows(report: dict) -> list[tuple[str, str]]:
    """The generative half of the table: coherence at the bar's temperature (and at the means), diversity,
    sharpness, Fréchet distance and live dimensions."""
    rows = []
    means = report.get("label_coherence_at_means", {})
    for t, v in report.get("label_coherence", {}).items():
        extra = f"; {pct(means[t])} at the means" if t in means else ""
        rows.append((f"Coherence label → {t}", at_least(v, BAR["label_coherence_min"]) + extra))
    means = report.get("coherence_at_means", {})
    for k, v in report["coherence"].items():
        extra = f"; {pct(means[k])} at the means" if k in means else ""
        rows.append((f"Coherence {arrow(k)}", (at_least(v, BAR["coherence_min"]) if "+" not in k else pct(v)) + extra))
    means = report.get("reconstruction_coherence_at_means", {})
    for t, v in report.get("reconstruction_coherence", {}).items():
        extra = f"; {pct(means[t])} at the means" if t in means else ""
        rows.append((f"Reconstruction read by the judge, {t} → {t} (own style kept)", pct(v) + extra))
    for s, v in report.get("diversity", {}).items():
        rows.append((f"Diversity, label → {s} (of real)", at_least(v, BAR["diversity_min"], lambda x: f"{x:.2f}")))
    for s, h in report.get("halftone", {}).items():
        rows.append((f"Half-tone share of the ink, {s}: generated / real ({pct(h['generated'])} / {pct(h['real'])})",
                     at_most(h["ratio"], BAR["halftone_ratio_max"], lambda x: f"{x:.2f}×")))
    floor = report.get("frechet_real_floor", {})
    for s, v in report.get("frechet", {}).items():
        bar = BAR.get(f"frechet_max/{s}")
        cell = at_most(v, bar, lambda x: f"{x:.2f}") if bar is not None else f"{v:.2f}"
        reference = f" (real vs real: {floor[s]:.2f})" if s in floor else ""
        rows.append((f"Fréchet distance, label → {s} vs real test{reference}",
                     cell))
    rows += speech_judge_rows(report)
    n_dims = len(next(iter(report.get("dimension_effects", {}).values()), []))
    for s, v in report.get("live_dimensions", {}).items():
        rows.append((f"Live latent dimensions, {s} (≥ 0.02 per pixel over ±2)",
                     f"{v} of {n_dims}, {mark(v >= BAR['live_dimensions_min'])} "
                     f"(bar ≥ {BAR['live_dimensions_min']})"))
    return rows


def ratio(x) -> str:
    return "no ratio" if x is None else f"{x:.2f}×"


def speech_judge_rows(report: dict) -> list[tuple[str, str]]:
    """Each speech judge: what it reads on its modality's real test recordings (FSDD's), as recorded and through
    the vocoder, and every direction into that modality with its intelligibility ratio (over the vocoded real
    figure)."""
    rows = []
    for name, section in report.get("speech_judges", {}).items():
        who, (test_set, title) = judge_title(name), judged(name)
        real = section[REAL_TEST]
        rows.append((f"Real {test_set} {title} read by the {who}: as recorded / through log-mel and Griffin-Lim "
                     "(vocoder ratio)",
                     f"{pct(real['raw'])} / {pct(real['vocoded'])} ({ratio(real['vocoder_ratio'])})"))
        means, means_ratio = section.get("directions_at_means", {}), section.get("intelligibility_ratio_at_means", {})
        for key, value in section["directions"].items():
            extra = f"; {pct(means[key])} ({ratio(means_ratio[key])}) at the means" if key in means else ""
            own = " (own style kept)" if own_style(key) else ""
            met = report.get("meets_bar", {}).get(f"intelligibility/{name}/{key}")
            against = "" if met is None else f", {mark(met)} (bar ≥ {ratio(BAR['intelligibility_ratio_min'])})"
            rows.append((f"{capitalised(title)} {arrow(key)}{own} read by the {who} (intelligibility ratio)",
                         f"{pct(value)} ({ratio(section['intelligibility_ratio'][key])}{against}){extra}"))
    return rows


def against_bar(value, line: str) -> str:
    """A share held to its line of the bar, where the bar has one."""
    return at_least(value, BAR[line]) if line in BAR else pct(value)


def extra_title(key: str) -> str:
    """An extra set ("<modality>/<stem>") as a reader knows it ("Dig-MNIST")."""
    spec = registry.MODALITIES.get(key.split("/", 1)[0])
    return getattr(spec.source, "extra_name", "") or key if spec else key


def accuracy_rows(report: dict) -> list[tuple[str, str]]:
    """Label accuracy from each modality alone on its test set, kind by kind, each kind's extra sets (other
    writers of the same scripts) after its test sets."""
    ua, ea = report["unimodal_accuracy"], report["extra_accuracy"]
    kinds = list(dict.fromkeys(BY_KIND.values()))

    def rank(name: str) -> int:  # a modality this version does not know comes last
        return kinds.index(kind(name)) if name in registry.MODALITIES else len(kinds)

    rows = []
    for group in range(len(kinds) + 1):
        for n in (n for n in ua if rank(n) == group):
            spec = registry.MODALITIES.get(n)
            where = f"{spec.title} alone ({spec.test_set})" if spec else f"{n} alone"
            rows.append((f"Label accuracy, {where}", against_bar(ua[n], f"unimodal_accuracy/{n}")))
        rows += [(f"Label accuracy, {extra_title(k)}", against_bar(v, f"extra_accuracy/{k}"))
                 for k, v in ea.items() if rank(k.split("/", 1)[0]) == group]
    return rows


def judge_rows(report: dict) -> list[tuple[str, str]]:
    """Each judge's own accuracy on the real sets it was scored on."""
    names = JUDGED | {f"{stem}_accuracy": extra_title(f"{n}/{stem}") for n, stem in extra_names().items()}
    return [(f"{name} judge's own accuracy: " + " / ".join(names[k] for k in scores if k in names),
             " / ".join(pct(v) for k, v in scores.items() if k in names))
            for name, scores in report.get("judges", {}).items()]


def markdown(report: dict) -> str:
    acc = report["accuracy"]
    rows = accuracy_rows(report)
    rows += [(f"Label accuracy, {k.replace('+', ' + ')}", at_least(v, BAR["multimodal_accuracy_min"]))
             for k, v in acc.items() if "+" in k]
    rows += generation_rows(report)
    rows += [(f"Stand-in for real users: {k}",
              f"{pct(v)}, {mark(v >= ROBUSTNESS_AIM)} (aim {pct(ROBUSTNESS_AIM)})")
             for k, v in report.get("robustness", {}).items()]
    rows += [(f"{m} reconstruction, given / missing (nats)", f"{r['given']:.1f} / {r['missing']:.1f}")
             for m, r in report["recon"].items()]
    rows += [(f"Test ELBO, all {in_words(len(report['recon']))} given (nats)", f"{report['elbo']:.1f}"),
             ("Active latent units", f"{report['active_units']} of {len(report['kl_per_dim'])}")]
    rows += judge_rows(report)
    lines = ["| metric | value |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    settings = report.get("generation", {})
    if settings:
        lines += ["", f"Generation at temperature {settings['temperature']:g} (the bar; \"at the means\" decodes the "
                      f"posterior means), {settings['per_class']} digits per class from the label for diversity, "
                      "sharpness and Fréchet distance. Judges trained on real training data only "
                      "(`python -m mvae.evaluation.judges`); speech is judged after Griffin-Lim. The FSDD-free "
                      "judge (speech_synthetic) learnt from espeak-ng's voices alone and never heard FSDD; an "
                      "intelligibility ratio is a figure over what the same judge reads on the real FSDD test "
                      "recordings through the same log-mel and Griffin-Lim"
                      + own_voice_words(report.get("coherence_pairs", {})) + "."]
    ckpt = report.get("checkpoint", {})
    if ckpt.get("command"):
        wall = f", {ckpt['wall_seconds'] / 60:.1f} min for the whole command" if ckpt.get("wall_seconds") else ""
        lines += ["", f"Trained by `{ckpt['command']}` in {ckpt['train_seconds'] / 60:.1f} min of training steps{wall} "
                      f"({ckpt['description']}, latent {ckpt['latent_dim']}); "
                      f"evaluated in {report['seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def own_voice_words(counts: dict) -> str:
    """How many recordings the table decoded again in their own voice, where the report says."""
    itself = counts.get("speech_itself", {})
    return "".join(f"; {n} → {n} decodes {k} test recordings, each once" for n, k in itself.items())


def describe(cfg: dict) -> str:
    """A model's architecture in a few words, from its config as saved in the checkpoint."""
    words = [cfg["architecture"], f"hidden {cfg['hidden']}"]
    if cfg.get("speech_hidden"):
        words.append(f"speech decoder hidden {cfg['speech_hidden']}")
    if cfg["architecture"] != "mlp":
        words.append(f"{cfg['conv_channels']} channels")
        if cfg.get("image_conv_extra"):
            words.append(f"+{cfg['image_conv_extra']} conv per stage on digits")
        if cfg.get("image_conv_batchnorm"):
            words.append("batch norm on digits")
    if cfg.get("image_decoder"):
        words.append(f"{cfg['image_decoder']} decoders for digits")
    if cfg.get("speech_decoder"):
        width = cfg.get("speech_conv_channels") or cfg["conv_channels"]
        convolutional = cfg["speech_decoder"] in ("conv", "conv1d")
        words.append(f"{cfg['speech_decoder']} speech decoder" + (f" ({width} channels)" if convolutional else ""))
    if cfg.get("log_mel_contrast", 1.0) != 1.0:
        words.append(f"log-mel contrast ×{cfg['log_mel_contrast']:g}")
    if cfg.get("decoded_subsets"):
        words.append(f"decoded from {cfg['decoded_subsets']} subsets an example")
    if cfg.get("style_dim"):
        words.append(f"shared {cfg['latent_dim']}, style {cfg['style_dim']} per modality")
        if cfg.get("cross_style") == "own":
            words.append("own style in cross terms")
        if cfg.get("swap_weight"):
            words.append(f"style swap ×{cfg['swap_weight']:g}")
        priced = {n: w for n, w in (cfg.get("style_kl_weights") or {}).items() if w != 1.0}
        if priced:
            words.append("style KL " + ", ".join(f"{n} ×{w:g}" for n, w in priced.items()))
    else:
        words.append("plain PoE")
    return ", ".join(words)


def generation_cells(report: dict) -> dict[str, str]:
    """The generative metrics of an evaluator report, one compact cell each, for the comparison table."""
    cells = {f"coherence label → {t} (T=1)": pct(v) for t, v in report.get("label_coherence", {}).items()}
    cells |= {f"coherence {arrow(k)} (T=1)": pct(v) for k, v in report.get("coherence", {}).items() if "+" not in k}
    cells |= {f"reconstruction read, {t} → {t} (T=1)": pct(v)
              for t, v in report.get("reconstruction_coherence", {}).items()}
    for name, section in report.get("speech_judges", {}).items():
        who, (test_set, title) = judge_title(name), judged(name)
        cells[f"real {test_set}, raw / vocoded, {who}"] = \
            f"{pct(section[REAL_TEST]['raw'])} / {pct(section[REAL_TEST]['vocoded'])}"
        for suffix, when in (("", "T=1"), ("_at_means", "means")):
            cells |= {f"{title} {arrow(k)}, {who} ({when}; ratio)":
                      f"{pct(v)} ({ratio(section[f'intelligibility_ratio{suffix}'][k])})"
                      for k, v in section.get(f"directions{suffix}", {}).items()}
    cells |= {f"diversity {s}": f"{v:.2f}" for s, v in report.get("diversity", {}).items()}
    cells |= {f"half-tone share {s} (× real)": f"{h['ratio']:.2f}" for s, h in report.get("halftone", {}).items()}
    cells |= {f"Fréchet distance {s}": f"{v:.2f}" for s, v in report.get("frechet", {}).items()}
    cells |= {f"live dimensions {s}": str(v) for s, v in report.get("live_dimensions", {}).items()}
    return cells


def training_cells(parameters: int, info: dict) -> dict[str, str]:
    """What training recorded in a checkpoint (its info), one compact cell each, for the comparison table."""
    metrics = info["metrics"]
    cells = {"parameters (M)": f"{parameters / 1e6:.2f}",
             "epochs × pairs": f"{len(info['history'])} × {info['train_config']['pairs_per_epoch']}",
             "training time (s)": f"{info['train_seconds']:.0f}"}
    cells |= {f"accuracy, {k} alone": f"{100 * v:.2f} %" for k, v in metrics["unimodal_accuracy"].items()}
    cells |= {f"accuracy, {k}": f"{100 * v:.2f} %" for k, v in metrics["accuracy"].items() if "+" in k}
    cells |= {f"{m} nll given / missing": f"{r['given']:.1f} / {r['missing']:.1f}"
              for m, r in metrics["recon"].items()}
    cells["test ELBO"] = f"{metrics['elbo']:.1f}"
    return cells


def comparison_table(columns: list[tuple[str, dict[str, str]]], notes: list[str]) -> str:
    """One column per checkpoint (name, row -> cell), the rows in the order they first appear, notes below."""
    rows = list(dict.fromkeys(k for _, cells in columns for k in cells))
    lines = ["| metric | " + " | ".join(n for n, _ in columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += [f"| {r} | " + " | ".join(c.get(r, "") for _, c in columns) + " |" for r in rows]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def block_markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_block(text: str, name: str) -> str:
    """What lies between <!-- name:start --> and <!-- name:end --> ("" when the file has no such block)."""
    start, end = block_markers(name)
    if start not in text or end not in text:
        return ""
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def replace_block(text: str, name: str, content: str) -> str:
    """Swap what lies between <!-- name:start --> and <!-- name:end --> for `content`."""
    start, end = block_markers(name)
    if start not in text or end not in text:
        raise ValueError(f"the file has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    return head + start + "\n" + content.rstrip("\n") + "\n" + end + rest.split(end, 1)[1]

