"""Latent-space analysis: per-dimension KL, active units, how much of each dimension tells the digits apart,
live dimensions and a 2-D map of the test set that separates the digits (linear discriminant analysis). The
map's stored form and the per-dimension effects live in `mvae.latent`, which the facade reads too."""

from __future__ import annotations

import numpy as np
import torch

from ..config import LABEL, N_CLASSES
from ..data.paired import PairedDataset, Pairs
from ..latent import LatentMap, dimension_effects
from ..model.export import lean_twin
from ..model.model import MVAE
from ..model.poe import kl_to_prior

ACTIVE_UNIT_KL = 0.01  # nats: a dimension whose average KL is below this carries no information


@torch.no_grad()
def posterior_means(model: MVAE, dataset: PairedDataset, pairs: Pairs, subset, batch_size=1024, device="cpu"):
    """Full-latent posterior means and log-variances of one input subset over the pairs -> (N, F) twice."""
    model.eval()
    mus, logvars = [], []
    for _, batch in dataset.batches(pairs, batch_size, device=device):
        mu, logvar = model.full_posterior({k: batch[k] for k in subset})
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def kl_per_dimension(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    return kl_to_prior(torch.from_numpy(mu), torch.from_numpy(logvar)).mean(0).numpy()


def active_units(kl: np.ndarray, threshold: float = ACTIVE_UNIT_KL) -> int:
    return int((kl > threshold).sum())


def class_variance_ratio(mu: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per dimension, the variance of the class means over the variance of every posterior mean."""
    class_means = np.stack([mu[labels == c].mean(0) for c in range(N_CLASSES)])
    return class_means.var(0) / np.maximum(mu.var(0), 1e-8)


def latent_figures(mu: np.ndarray, logvar: np.ndarray, labels: np.ndarray) -> dict:
    """The report's latent sections, from the test pairs' posterior means and log-variances."""
    kl = kl_per_dimension(mu, logvar)
    return {"kl_per_dim": kl.tolist(), "active_units": active_units(kl),
            "class_variance_ratio": class_variance_ratio(mu, labels).tolist()}


def discriminant_directions(latents: np.ndarray, labels: np.ndarray, n: int = 2) -> np.ndarray:
    """The n directions that best separate the classes relative to their spread (Fisher's LDA) -> (n, D).

    Whitening by the pooled within-class covariance turns LDA into PCA of the whitened class means.
    """
    classes = np.unique(labels)
    means = np.stack([latents[labels == c].mean(0) for c in classes])
    within = sum(np.cov(latents[labels == c], rowvar=False, bias=True) * (labels == c).sum() for c in classes)
    within = within / len(latents) + 1e-6 * np.eye(latents.shape[1])
    values, vectors = np.linalg.eigh(within)
    whiten = vectors / np.sqrt(values)
    weights = np.sqrt(np.array([(labels == c).mean() for c in classes]))[:, None]
    _, _, vt = np.linalg.svd(weights * (means - latents.mean(0)) @ whiten, full_matrices=False)
    directions = (whiten @ vt[:n].T).T
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def latent_map(latents: np.ndarray, labels: np.ndarray, max_points: int = 2000, seed: int = 0) -> LatentMap:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(latents), size=min(max_points, len(latents)), replace=False))
    components = discriminant_directions(latents.astype(np.float64), labels).astype(np.float32)
    latents, labels = latents[keep].astype(np.float32), labels[keep].astype(np.int64)
    mean = latents.mean(0)
    return LatentMap(latents, ((latents - mean) @ components.T).astype(np.float32), labels, mean, components)


LIVE_CHANGE = 0.02  # mean change per pixel between -LIVE_SPAN and +LIVE_SPAN (mvae.latent) for a live dimension


def live_dimensions(effects: np.ndarray, threshold: float = LIVE_CHANGE) -> int:
    return int((np.asarray(effects) >= threshold).sum())


@torch.no_grad()
def dimension_figures(model: MVAE, scripts) -> dict:
    """Every latent dimension's effect on each modality, around each digit's posterior from the label, and how
    many dimensions are live for each script."""
    base, _ = model.full_posterior({LABEL: torch.arange(N_CLASSES)})
    lean = lean_twin(model)
    effects = {t: dimension_effects(lean, base.cpu().numpy(), t) for t in model.input_names}
    return {"dimension_effects": {t: e.tolist() for t, e in effects.items()},
            "live_dimensions": {s: live_dimensions(effects[s]) for s in scripts}}
