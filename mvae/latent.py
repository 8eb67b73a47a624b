"""The latent space as the facade shows it: the stored 2-D map of the test set (written by the evaluator,
read by `Pipeline.latent_map`) and how much each latent dimension changes a decoded modality.

Here rather than in `mvae.evaluation`, so that the facade reads the evaluator's artefact without depending
on the evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api_checks import MAX_SAMPLES
from .errors import CheckpointError
from .store import atomic_write, seal, unpack

LATENT_MAP_FILE = "latent_map.safetensors"
LIVE_SPAN = 2.0  # a dimension is traversed from -LIVE_SPAN to +LIVE_SPAN
FIELDS = ("latents", "coords", "labels", "mean", "components")
CONTENT = "latent map"


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
        """Written by the evaluator, in the checkpoints' format (digest and all)."""
        from safetensors.numpy import save  # writing only: the lean app reads the file with mvae.store

        path = Path(folder) / LATENT_MAP_FILE
        arrays = {k: np.ascontiguousarray(getattr(self, k)) for k in FIELDS}
        atomic_write(path, seal(lambda t, m: save(t, metadata=m), arrays, {"content": CONTENT}))
        return path

    @classmethod
    def load(cls, folder) -> LatentMap | None:
        path = Path(folder) / LATENT_MAP_FILE
        if not path.is_file():
            return None
        try:
            arrays, meta = unpack(path)
            if meta.get("content") != CONTENT or set(arrays) != set(FIELDS):
                raise CheckpointError(f"{path} holds {sorted(arrays)}, not a latent map")
            return cls(**arrays)
        except CheckpointError as exc:
            raise CheckpointError(f"The latent map {path} cannot be used ({exc}). Re-run the evaluator: "
                                  f"python -m mvae.evaluation.report {Path(folder)}") from exc


def dimension_effects(model, latents, target: str, span: float = LIVE_SPAN, batch: int = MAX_SAMPLES) -> np.ndarray:
    """How much each dimension of the full latent changes `target`: the mean absolute change per value
    (per pixel for a digit) between the dimension set to -span and to +span, averaged over `latents` (N, F).
    `model` is a LeanMVAE (`mvae.runtime`). The 2 x F x N decodings run `batch` rows at a time: the model
    files are bounded for batches of MAX_SAMPLES, so no network may ever be given more."""
    base = np.asarray(latents, np.float32).reshape(-1, model.full_latent_dim)
    n, dims = base.shape
    change = np.empty(dims * n, np.float32)  # dim-major: entry d*n + i moves dim d of latent i
    pairs = max(1, batch // 2)  # each pair is a low and a high row
    for start in range(0, dims * n, pairs):
        index = np.arange(start, min(start + pairs, dims * n))
        moved, rows = index // n, np.arange(len(index))
        low, high = base[index % n], base[index % n]  # fancy indexing copies
        low[rows, moved], high[rows, moved] = -span, span
        out = model.outputs(np.concatenate([low, high]), [target])[target]
        change[index] = np.abs(out[: len(index)] - out[len(index):]).reshape(len(index), -1).mean(1)
    return change.reshape(dims, n).mean(1)
