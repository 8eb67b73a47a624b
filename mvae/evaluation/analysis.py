"""Latent-space analysis: per-dimension KL, active units, how much each dimension changes a decoded
modality, and a 2-D map of the test set that separates the digits (linear discriminant analysis)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save

from .checkpoint import atomic_write
from .data.paired import PairedDataset, Pairs
from .errors import CheckpointError
from .model import MVAE, normalise_inputs
from .poe import kl_to_prior

LATENT_MAP_FILE = "latent_map.safetensors"
ACTIVE_UNIT_KL = 0.01  # nats: a dimension whose average KL is below this carries no information


@dataclass
class LatentMap:
    """Test-set posterior means (full latents) and their projection on the two discriminant directions."""

    latents: np.ndarray  # (N, F)
    coords: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (2, F)

    def project(self, latents) -> np.ndarray:
        return (np.asarray(latents, np.float32).reshape(-1, self.mean.shape[0]) - self.mean) @ self.components.T

    def save(self, folder) -> Path:
        path = Path(folder) / LATENT_MAP_FILE
        atomic_write(path, save({k: np.ascontiguousarray(getattr(self, k)) for k in
                                 ("latents", "coords", "labels", "mean", "components")}))
        return path

    @classmethod
    def load(cls, folder) -> LatentMap | None:
        path = Path(folder) / LATENT_MAP_FILE
        if not path.is_file():
            return None
        try:
            return cls(**load_file(path))
        except Exception as exc:
            raise CheckpointError(f"The latent map {path} is damaged ({type(exc).__name__}); "
                                  "re-run the evaluator.") from exc


@torch.no_grad()
def posterior_means(model: MVAE, dataset: PairedDataset, pairs: Pairs, subset, batch_size=1024, device="cpu"):
    """Full-latent posterior means and log-variances of one input subset over the pairs -> (N, F) twice."""
    model.eval()
    mus, logvars = [], []
    for _, batch in dataset.batches(pairs, batch_size, device=device):
        inputs = normalise_inputs(model, {k: batch[k] for k in subset})
        mu, logvar = model.full_posterior(inputs)
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
    return torch.cat(mus).numpy(), torch.cat(logvars).numpy()


def kl_per_dimension(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    return kl_to_prior(torch.from_numpy(mu), torch.from_numpy(logvar)).mean(0).numpy()


def active_units(kl: np.ndarray, threshold: float = ACTIVE_UNIT_KL) -> int:
    return int((kl > threshold).sum())


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


LIVE_SPAN = 2.0  # a dimension is traversed from -LIVE_SPAN to +LIVE_SPAN
LIVE_CHANGE = 0.02  # mean change per pixel across that span for a dimension to count as live


@torch.no_grad()
def dimension_effects(model: MVAE, latents, target: str, span: float = LIVE_SPAN) -> np.ndarray:
    """How much each dimension of the full latent changes `target`: the mean absolute change per value
    (per pixel for a digit) between the dimension set to -span and to +span, averaged over `latents` (N, F)."""
    model.eval()
    base = torch.as_tensor(np.asarray(latents, np.float32)).reshape(-1, model.full_latent_dim)
    n, dims = base.shape
    low, high = base.repeat(dims, 1), base.repeat(dims, 1)  # dim-major: rows d*n .. d*n+n-1 move dim d
    index = torch.arange(dims).repeat_interleave(n)
    rows = torch.arange(dims * n)
    low[rows, index], high[rows, index] = -span, span
    out = model.outputs(torch.cat([low, high]), [target])[target]
    change = (out[: dims * n] - out[dims * n:]).abs().flatten(1).mean(1)
    return change.view(dims, n).mean(1).numpy()


def live_dimensions(effects: np.ndarray, threshold: float = LIVE_CHANGE) -> int:
    return int((np.asarray(effects) >= threshold).sum())
