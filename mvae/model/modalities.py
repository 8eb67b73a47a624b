"""The modality registry: each entry bundles shape, networks, likelihood and every transform of its data.

A modality's kind (a digit image, a spoken digit, the label) decides how its data is read into a bank,
checked, prepared from a user's input, augmented in training, normalised for its encoder and turned back
into data after its decoder. This module is the only place that knows which modality is of which kind:
the rest of the package asks a modality, never tests its name. Adding a modality is one entry in KINDS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import arguments
from ..config import ARCHITECTURES, IMAGE_MODALITIES, IMAGE_SIZE, LABEL, AudioConfig, ModelConfig
from ..data.banks import image_bank, speech_bank
from ..data.checks import check_recordings
from ..data.paired import Bank
from ..data.sources import fsdd_recordings, load_images
from ..errors import InputError
from ..signals.audio import AudioFrontEnd, PreparedSpeech
from ..signals.augment import augment_images
from ..signals.images import prepare_digit
from . import nets


def bernoulli_nll(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).sum(-1)


def laplace_nll(scale: float):
    def nll(mean, target):
        return ((target - mean).abs() / scale + math.log(2 * scale)).flatten(2).sum(-1)
    return nll


def gaussian_nll(scale: float):
    def nll(mean, target):
        z = (target - mean) / scale
        return (0.5 * z.pow(2) + math.log(scale) + 0.5 * math.log(2 * math.pi)).flatten(2).sum(-1)
    return nll


def categorical_nll(logits, target):
    """logits (S, B, C), target (S, B) int -> (S, B)."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)


class Identity(nn.Module):
    """The normaliser of a modality whose encoder takes its data as it is."""

    def forward(self, x):
        return x

    def inverse(self, y):
        return y

    def fit(self, items: torch.Tensor) -> None:
        pass


class Standardise(nn.Module):
    """Per-bin standardisation of the log-mel; its statistics are buffers, so they travel with the weights."""

    def __init__(self, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins, 1))
        self.register_buffer("std", torch.ones(n_bins, 1))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean.copy_(mean.reshape_as(self.mean))
        self.std.copy_(std.reshape_as(self.std).clamp_min(1e-3))

    def fit(self, items: torch.Tensor) -> None:
        """Per-bin mean and std over every frame of the log-mels (N, bins, frames)."""
        self.set_stats(items.mean(dim=(0, 2)), items.std(dim=(0, 2)))

    def forward(self, x):
        return (x - self.mean) / self.std

    def inverse(self, y):
        return y * self.std + self.mean


@dataclass(frozen=True)
class Kind:
    """What a kind of data is, apart from any model: where its items go in the facade's answers
    (`group`), and how a user's input, a dataset split and a training batch of it are handled."""

    group: str  # "images", "mels" or "probs": the field of mvae.inference.Decoded that holds it

    def prepare(self, value, front_end: AudioFrontEnd, n_classes: int) -> tuple[torch.Tensor, object]:
        """A user's input -> (one item in the model's input space, what else the preparation found)."""
        raise NotImplementedError

    def bank(self, data_dir, name: str, split: str, front_end: AudioFrontEnd, aug_copies: int = 0,
             aug_strength: float = 1.0, seed: int = 0, progress: bool = True, limit: int | None = None) -> Bank:
        raise NotImplementedError

    def check(self, data_dir, name: str, split: str, audio: AudioConfig) -> None:
        """Reads every file of the split, raising DataError that names the first bad one."""

    def augment(self, items: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
        """A training batch varied as its kind is in the wild; identity unless the kind varies per batch."""
        return items


class ImageKind(Kind):
    def prepare(self, value, front_end, n_classes):
        return torch.from_numpy(prepare_digit(value)), None

    def bank(self, data_dir, name, split, front_end=None, aug_copies=0, aug_strength=1.0, seed=0,
             progress=True, limit=None):
        return image_bank(data_dir, name, split, limit)

    def check(self, data_dir, name, split, audio):
        load_images(data_dir, name, split)

    def augment(self, items, strength, generator):
        return augment_images(items.cpu(), strength, generator).to(items.device)


class SpeechKind(Kind):
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
             limit=None):
        # Augmented copies are made for training speech only: a test split is scored as it was recorded.
        copies = aug_copies if split in ("train", "fit") else 0
        return speech_bank(data_dir, split, front_end, copies, aug_strength, seed, progress, limit)

    def check(self, data_dir, name, split, audio):
        check_recordings(fsdd_recordings(data_dir, split), audio, data_dir)


class LabelKind(Kind):
    def prepare(self, value, front_end, n_classes):
        return torch.tensor(arguments.label(value, n_classes)), None


IMAGES, SPEECH, LABELS = ImageKind("images"), SpeechKind("mels"), LabelKind("probs")
KINDS: dict[str, Kind] = {**{name: IMAGES for name in IMAGE_MODALITIES}, "speech": SPEECH, LABEL: LABELS}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown modality {name!r}; use any of {', '.join(KINDS)}")
    return KINDS[name]


def load_banks(data_dir, split: str, front_end: AudioFrontEnd, modalities, aug_copies: int = 0,
               aug_strength: float = 1.0, seed: int = 0, progress: bool = True,
               limit: int | None = None) -> dict[str, Bank]:
    """Each modality's bank of `split` in the model's input space; augmentation applies to training speech
    only; `limit` caps each bank."""
    return {name: kind(name).bank(data_dir, name, split, front_end, aug_copies, aug_strength, seed, progress, limit)
            for name in modalities}


def check_dataset(data_dir, modalities, splits=("train", "test"), audio: AudioConfig | None = None) -> None:
    """Reads every file a run will use, before any of it is used; raises DataError naming a bad file."""
    for split in splits:
        for name in modalities:
            kind(name).check(Path(data_dir), name, split, audio or AudioConfig())


@dataclass
class Modality:
    name: str
    shape: tuple[int, ...]
    nll: Callable  # (decoder output (S, B, *shape), target (S, B, *shape)) -> (S, B), in nats
    weight: float  # multiplies the nll in the training loss
    make_encoder: Callable[[], nn.Module]
    make_decoder: Callable[[], nn.Module]
    to_output: Callable[[torch.Tensor], torch.Tensor]  # decoder output -> the encoder's input space
    make_norm: Callable[[], nn.Module]  # data -> the encoder's input space, with `inverse` and `fit`
    kind: Kind
    n_classes: int

    def prepare(self, value, front_end: AudioFrontEnd) -> tuple[torch.Tensor, PreparedSpeech | None]:
        """A user's input -> one item in the model's input space, and what else its preparation found."""
        return self.kind.prepare(value, front_end, self.n_classes)

    def augment(self, items: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
        return self.kind.augment(items, strength, generator)


def _network_factories(cfg: ModelConfig, shape, digits: bool):
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.architecture!r}; use one of {ARCHITECTURES}")
    encoder_kind, _, decoder_kind = cfg.architecture.partition("-")
    decoder_kind = (cfg.image_decoder if digits else "") or decoder_kind or encoder_kind
    extra, batchnorm = (cfg.image_conv_extra, cfg.image_conv_batchnorm) if digits else (0, False)
    size = cfg.latent_dim + cfg.style_dim  # an input modality's expert also gives its own style
    encoders = {"mlp": lambda: nets.mlp_encoder(shape, cfg.hidden, size),
                "conv": lambda: nets.conv_encoder(shape, cfg.hidden, size, cfg.conv_channels, extra, batchnorm)}
    decoders = {"mlp": lambda: nets.mlp_decoder(shape, cfg.hidden, size),
                "conv": lambda: nets.conv_decoder(shape, cfg.hidden, size, cfg.conv_channels)}
    return encoders[encoder_kind], decoders[decoder_kind]


def build_modalities(cfg: ModelConfig) -> dict[str, Modality]:
    def balance(shape):
        return cfg.reference_dim / math.prod(shape)

    registry = {}
    for name in cfg.modalities:
        data = kind(name)
        if data is IMAGES:
            shape, nll, to_output, make_norm = (IMAGE_SIZE, IMAGE_SIZE), bernoulli_nll, torch.sigmoid, Identity
        elif data is SPEECH:
            shape = (cfg.audio.n_mels, cfg.audio.n_frames)
            nll = {"laplace": laplace_nll, "gaussian": gaussian_nll}[cfg.speech_likelihood](cfg.speech_scale)
            to_output, make_norm = nn.Identity(), lambda: Standardise(cfg.audio.n_mels)
        else:
            raise ValueError(f"{name!r} cannot be an input modality")
        make_encoder, make_decoder = _network_factories(cfg, shape, digits=data is IMAGES)
        registry[name] = Modality(name, shape, nll, cfg.recon_weights.get(name, 1.0) * balance(shape),
                                  make_encoder, make_decoder, to_output, make_norm, data, cfg.n_classes)
    registry[LABEL] = Modality(
        LABEL, (), categorical_nll, cfg.label_weight,
        lambda: nets.label_encoder(cfg.n_classes, cfg.hidden, cfg.latent_dim),
        lambda: nets.label_head(cfg.n_classes, cfg.latent_dim),
        lambda logits: torch.softmax(logits, dim=-1), Identity, LABELS, cfg.n_classes,
    )
    return registry
