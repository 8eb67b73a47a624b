"""Diversity, sharpness and Fréchet distance of the digits a model generates from the label, each against
the real test split of its script."""

from __future__ import annotations

import numpy as np
import torch

from .. import registry
from ..config import LABEL, N_CLASSES
from ..data.paired import Bank
from ..model.model import MVAE
from ..signals.audio import AudioFrontEnd
from .analysis import dimension_figures
from .bar import GENERATION_TEMPERATURE
from .coherence import ModelGenerator, class_labels
from .judges import Judge
from .metrics import diversity, frechet_distance, halftone_share


def per_class_sample(bank: Bank, per_class: int, rng: np.random.Generator) -> Bank:
    """Up to per_class random items of each class of the bank."""
    rows = np.concatenate([rng.permutation(np.flatnonzero(bank.labels == c))[:per_class] for c in range(N_CLASSES)])
    return Bank(bank.items[torch.as_tensor(rows)], bank.labels[rows])


def script_quality(made: torch.Tensor, labels: torch.Tensor, real: Bank, judge: Judge, per_class: int,
                   rng: np.random.Generator) -> dict:
    """Section -> figure for one script's generated digits, against its real test split."""
    sample = per_class_sample(real, per_class, rng)
    share, real_share = halftone_share(made), halftone_share(real.items)
    real_features = judge.features(real.items)
    # As many real test digits as were generated, against the rest of the split: what a generator that draws
    # real digits would score, the floor that sampling noise puts under the distance.
    held = torch.as_tensor(rng.permutation(len(real.labels)))
    n = min(len(made), len(held) // 2)
    return {"diversity": diversity(made, labels.numpy(), sample.items, sample.labels),
            "halftone": {"generated": share, "real": real_share, "ratio": share / max(real_share, 1e-9)},
            "frechet": frechet_distance(judge.features(made), real_features),
            "frechet_real_floor": frechet_distance(real_features[held[:n]], real_features[held[n:]])}


@torch.no_grad()
def generation_quality(model: MVAE, judges: dict, test_banks: dict[str, Bank], per_class: int = 200,
                       seed: int = 0) -> dict:
    """Diversity, sharpness and Fréchet distance of digits generated from the label at the bar's
    temperature, each against the real test split of its script, and every latent dimension's effect."""
    model.eval()
    rng = np.random.default_rng(seed)
    generate = ModelGenerator(model, AudioFrontEnd(model.cfg.audio), temperature=GENERATION_TEMPERATURE, seed=seed)
    labels = class_labels(per_class)
    scripts = [s for s in registry.names(registry.IMAGE) if s in model.input_names]
    out = {"diversity": {}, "halftone": {}, "frechet": {}, "frechet_real_floor": {}}
    for script in scripts:
        made = generate({LABEL: labels}, script)
        for section, figure in script_quality(made, labels, test_banks[script], judges[script], per_class,
                                              rng).items():
            out[section][script] = figure
    out |= dimension_figures(model, scripts)
    out["generation"] = {"temperature": GENERATION_TEMPERATURE, "per_class": per_class,
                         "source": "label", "real": "test split"}
    return out
