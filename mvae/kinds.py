"""The kinds of data a modality can be (a digit image, a spoken digit, the label), with numpy alone.

A kind decides a modality's shape, how a user's input is prepared for the model, what its decoder's output
becomes (`output`), where its items go in the facade's answers (`group`), and how its dataset files are read
and checked. This module and `mvae.model.modalities` (the networks and likelihoods, in torch) are the only
places that know which modality is of which kind: the rest of the package asks the kind, never tests a
name. Adding a modality is one entry in KINDS.

Training-time work (building a bank, augmenting a batch) needs torch, which the lean app does not install,
so those methods import their torch code when they are called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import arguments
from .config import IMAGE_MODALITIES, IMAGE_SIZE, LABEL, AudioConfig, ModelConfig
from .errors import InputError
from .signals.images import prepare_digit


@dataclass(frozen=True)
class Kind:
    group: str  # "images", "mels" or "probs": the field of mvae.inference.Decoded that holds it
    output: str  # what turns a decoder output into data: "sigmoid", "identity" or "softmax"

    def shape(self, cfg: ModelConfig) -> tuple[int, ...]:
        """One item's shape; a label is a single class index."""
        return ()

    def prepare(self, value, front_end, n_classes: int) -> tuple[np.ndarray, object]:
        """A user's input -> (one item in the model's input space, what else the preparation found)."""
        raise NotImplementedError

    def bank(self, data_dir, name: str, split: str, front_end, aug_copies: int = 0, aug_strength: float = 1.0,
             seed: int = 0, progress: bool = True, limit: int | None = None, cache=None):
        """The split's items in the model's input space; `cache` (mvae.data.cache.BankCache) keeps a bank that
        is slow to make and announces its making."""
        raise NotImplementedError

    def check(self, data_dir, name: str, split: str, audio: AudioConfig) -> None:
        """Reads every file of the split, raising DataError that names the first bad one."""

    def augment(self, items, strength: float, generator):
        """A training batch varied as its kind is in the wild; identity unless the kind varies per batch."""
        return items


class ImageKind(Kind):
    def shape(self, cfg):
        return (IMAGE_SIZE, IMAGE_SIZE)

    def prepare(self, value, front_end, n_classes):
        return prepare_digit(value), None

    def bank(self, data_dir, name, split, front_end=None, aug_copies=0, aug_strength=1.0, seed=0,
             progress=True, limit=None, cache=None):
        from .data.banks import image_bank  # read from one array in a second or two: nothing to cache

        return image_bank(data_dir, name, split, limit)

    def check(self, data_dir, name, split, audio):
        from .data.sources import load_images

        load_images(data_dir, name, split)

    def augment(self, items, strength, generator):
        from .signals.augment import augment_images

        return augment_images(items.cpu(), strength, generator).to(items.device)


class SpeechKind(Kind):
    def shape(self, cfg):
        return (cfg.audio.n_mels, cfg.audio.n_frames)

    def prepare(self, value, front_end, n_classes):
        if isinstance(value, (bytes, bytearray, memoryview)):
            prepared = front_end.prepare_bytes(bytes(value))
        elif isinstance(value, tuple) and len(value) == 2:
            prepared = front_end.prepare(*value)
        else:
            raise InputError("Speech must be WAV/FLAC/OGG bytes or a (waveform, sample_rate) tuple, "
                             f"not {type(value).__name__}.")
        return prepared.log_mel, prepared

    def bank(self, data_dir, name, split, front_end, aug_copies=0, aug_strength=1.0, seed=0, progress=True,
             limit=None, cache=None):
        from .data.banks import speech_bank

        # Augmented copies are made for training speech only: a test split is scored as it was recorded.
        copies = aug_copies if split in ("train", "fit") else 0
        return speech_bank(data_dir, split, front_end, copies, aug_strength, seed, progress, limit, cache)

    def check(self, data_dir, name, split, audio):
        from .data.checks import check_recordings
        from .data.sources import fsdd_recordings

        check_recordings(fsdd_recordings(data_dir, split), audio, data_dir)


class LabelKind(Kind):
    def prepare(self, value, front_end, n_classes):
        return np.array(arguments.label(value, n_classes)), None


IMAGES, SPEECH, LABELS = ImageKind("images", "sigmoid"), SpeechKind("mels", "identity"), LabelKind("probs", "softmax")
KINDS: dict[str, Kind] = {**{name: IMAGES for name in IMAGE_MODALITIES}, "speech": SPEECH, LABEL: LABELS}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown modality {name!r}; use any of {', '.join(KINDS)}")
    return KINDS[name]


def check_dataset(data_dir, modalities, splits=("train", "test"), audio: AudioConfig | None = None) -> None:
    """Reads every file a run will use, before any of it is used; raises DataError naming a bad file."""
    for split in splits:
        for name in modalities:
            kind(name).check(Path(data_dir), name, split, audio or AudioConfig())
