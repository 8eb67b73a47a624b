"""Inputs the benchmarks feed the model and the app. Importing this module takes numpy alone, so that a fresh
interpreter that measures the lean runtime draws its canvas without importing torch; the training batch and the
browser's recording import torch, soundfile and torchaudio when they are made."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def canvas_drawing(size: int = 280) -> np.ndarray:
    """A transparent canvas with a black stroke, as the drawing widget returns it (the ink is in alpha)."""
    yy, xx = np.indices((size, size))
    ring = np.abs(np.hypot(yy - size * 0.45, xx - size * 0.55) - size * 0.22) < size * 0.03
    stem = (np.abs(xx - size * 0.35) < size * 0.03) & (yy > size * 0.2) & (yy < size * 0.85)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = ((ring | stem) * 255).astype(np.uint8)
    return rgba


def random_batch(model, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A training batch of each of the model's modalities, in its encoder's shape; the work done does not depend
    on the values, so every modality draws from [0, 1)."""
    import torch

    from mvae.config import LABEL
    from mvae.kinds import kind

    cfg = model.cfg
    batch = {n: torch.rand(batch_size, *kind(n).shape(cfg), generator=generator) for n in cfg.modalities}
    return batch | {LABEL: torch.randint(0, cfg.n_classes, (batch_size,), generator=generator)}


def stereo_recording(seconds: float = 2.0, rate: int = 44100) -> tuple[bytes, str]:
    """WAV bytes of a spoken digit as a browser records it: 16-bit stereo at 44.1 kHz, `seconds` long."""
    import soundfile as sf
    import torch
    import torchaudio

    from mvae import registry
    from mvae.data.sources import recordings

    source, mono = "a synthetic tone", None
    data_dir = os.environ.get("MVAE_DATA_DIR")
    if data_dir:
        try:
            rec = recordings(data_dir, registry.names(registry.SPEECH)[0], "test")[0]
            mono, native = sf.read(rec.path, dtype="float32")
            source = f"FSDD test recording {rec.path.name}"
        except Exception:  # noqa: BLE001 - any trouble with the real data falls back to the tone
            mono = None
    if mono is None:
        from tests.helpers import tone
        mono, native = tone(3, np.random.default_rng(0)), 8000
    mono = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(mono)), native, rate).numpy()
    n = int(seconds * rate)
    wave = np.zeros(n, np.float32)
    start = max((n - len(mono)) // 2, 0)
    wave[start:start + len(mono)] = mono[: n - start]
    wave += np.random.default_rng(1).normal(0, 1e-3, n).astype(np.float32)  # room noise, not digital silence
    buf = io.BytesIO()
    sf.write(buf, np.stack([wave, 0.9 * wave], axis=1), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue(), source
