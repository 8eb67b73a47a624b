"""The kinds of data a modality can be (a digit image, a spoken digit, the label), with numpy alone.

A kind decides a modality's shape, how a user's input is prepared for the model, what its decoder's output
becomes (`output`) and where its items go in the facade's answers (`group`). This module and
`mvae.model.modalities` (the networks, likelihoods and augmentation, in torch) are the only places that know
which kind serves which modality (its entry in `mvae.registry` names the kind): the rest of the package asks
the kind, never tests a name.

What else a kind decides belongs to the layers above, which look it up by kind: how its dataset files are
read into a bank (`mvae.data.banks`) and checked (`mvae.data.checks`), and how a training batch is varied
(`mvae.model.modalities`). They need torch or the data layer, and this module is below both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import api_checks, registry
from .config import IMAGE_SIZE, LABEL, ModelConfig
from .errors import InputError
from .signals.images import prepare_digit


@dataclass(frozen=True)
class Kind:
    group: str  # "images", "mels" or "probs": which of Decoded's fields holds it ("mels": log_mels)
    output: str  # what turns a decoder output into data: "sigmoid", "identity" or "softmax"
    # Whether what the model makes of it reaches a person through the vocoder (log-mel -> Griffin-Lim waveform):
    # a judge then reads it after that round trip, as it is heard, and each such reading costs a resynthesis.
    vocoded: bool = False

    def shape(self, cfg: ModelConfig) -> tuple[int, ...]:
        """One item's shape; a label is a single class index."""
        return ()

    def prepare(self, value, front_end, n_classes: int) -> tuple[np.ndarray, object]:
        """A user's input -> (one item in the model's input space, what else the preparation found)."""
        raise NotImplementedError


class ImageKind(Kind):
    def shape(self, cfg):
        return (IMAGE_SIZE, IMAGE_SIZE)

    def prepare(self, value, front_end, n_classes):
        return prepare_digit(value), None


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


class LabelKind(Kind):
    def prepare(self, value, front_end, n_classes):
        return np.array(api_checks.label(value, n_classes)), None


IMAGES, SPEECH = ImageKind("images", "sigmoid"), SpeechKind("mels", "identity", vocoded=True)
LABELS = LabelKind("probs", "softmax")
BY_KIND: dict[str, Kind] = {registry.IMAGE: IMAGES, registry.SPEECH: SPEECH}


def kind(name: str) -> Kind:
    """The kind of a registered modality, or of the label."""
    if name == LABEL:
        return LABELS
    if name not in registry.MODALITIES:
        raise ValueError(f"unknown modality {name!r}; use any of {', '.join((*registry.MODALITIES, LABEL))}")
    return BY_KIND[registry.MODALITIES[name].kind]

