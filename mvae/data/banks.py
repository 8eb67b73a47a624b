"""Builds a bank of one modality's split from the prepared data, in the model's input space.

Which builder serves which modality is for mvae.modalities to say (`load_banks` there)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..signals.audio import AudioFrontEnd
from .checks import check_recordings, recording_error
from .paired import Bank
from .sources import fsdd_recordings, load_images, read_regular


def spread(n: int, limit: int | None) -> np.ndarray:
    """`limit` evenly spaced indices out of n (all of them when limit is None), so a slice keeps every class."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def image_bank(data_dir, script: str, split: str, limit: int | None = None) -> Bank:
    data = load_images(data_dir, script, split)
    keep = spread(len(data.labels), limit)
    return Bank(torch.from_numpy(data.images[keep]).float().div_(255.0), data.labels[keep])


def speech_bank(data_dir, split: str, front_end: AudioFrontEnd, aug_copies: int = 0,
                aug_strength: float = 1.0, seed: int = 0, progress: bool = True, limit: int | None = None) -> Bank:
    """Log-mels of every recording of the split, plus `aug_copies` augmented versions of each.

    The augmented copies are made once, here, because a pitch or speed change per batch would cost
    more than the whole model step on a CPU.
    """
    rng = np.random.default_rng([seed, 7])
    shift = front_end.cfg.aug_shift_frames * front_end.cfg.hop_length
    waves, labels = [], []
    recordings = fsdd_recordings(data_dir, split)
    recordings = [recordings[i] for i in spread(len(recordings), limit)]
    check_recordings(recordings, front_end.cfg, Path(data_dir))
    for rec in tqdm(recordings, desc=f"speech {split}", disable=not progress, leave=False):
        samples, rate = sf.read(io.BytesIO(read_regular(rec.path)), dtype="float32", always_2d=True)
        try:
            prepared = front_end.prepare(samples, rate)
        except InputError as exc:  # its advice is for a person at a microphone, not for a dataset
            raise recording_error(rec.path, Path(data_dir), f"cannot be used ({exc})") from exc
        waves.append(front_end.fix_length(prepared.voiced))
        labels.append(rec.digit)
        for _ in range(aug_copies):
            varied = front_end.normalise(front_end.augment(prepared.voiced, rng, aug_strength))
            offset = int(rng.integers(-shift, shift + 1)) if aug_strength > 0 else 0
            waves.append(front_end.fix_length(varied, offset))
            labels.append(rec.digit)
    log_mels = torch.from_numpy(np.concatenate([front_end.log_mel(np.stack(waves[i:i + 512]))
                                                for i in range(0, len(waves), 512)]))
    return Bank(log_mels, np.asarray(labels, dtype=np.int64))
