"""The modality registry: each entry bundles shape, networks, likelihood and every transform of its data.

A modality's kind (`mvae.kinds`: a digit image, a spoken digit, the label) decides how its data is prepared
from a user's input and turned back into data after its decoder; this module adds, per kind, the torch side:
networks, likelihood, the encoder's normaliser and the augmentation of a training batch. These two, and the
data layer's tables of how each kind's files are read and checked (`mvae.data`), are the only places that
know which modality is of which kind: the rest of the package asks a modality, never tests its name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ARCHITECTURES, LABEL, ModelConfig
from ..kinds import IMAGES, LABELS, SPEECH, Kind, kind
from ..runtime.forward import standardise, to_output, unstandardise
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
        return standardise(x, self.mean, self.std)

    def inverse(self, y):
        return unstandardise(y, self.mean, self.std)


def augment_images_on_device(items: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    # torchaudio comes with the augmentations: imported only by a run that augments.
    from ..signals.augment import augment_images

    return augment_images(items.cpu(), strength, generator).to(items.device)


# Each kind's training-time variation, looked up by kind, so that the kinds (numpy, below torch) need not know.
AUGMENTS = {IMAGES: augment_images_on_device}


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

    def augment(self, items: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
        """A training batch varied as its kind is in the wild; as it is unless AUGMENTS has its kind."""
        augment = AUGMENTS.get(self.kind)
        return items if augment is None else augment(items, strength, generator)


@dataclass(frozen=True)
class Networks:
    """What a kind's networks are made of, beyond the architecture's shared settings."""

    decoder: str | None  # "mlp" or "conv" where the kind's decoder differs from the architecture's
    conv_extra: int  # extra conv layers of the encoder
    conv_batchnorm: bool
    decoder_width: int  # channels of a conv decoder
    decoder_hidden: int = 0  # width of the decoder's hidden layers where it differs from the architecture's


# Per kind: its likelihood and its encoder's normaliser (cfg -> (nll, make_norm)), and its networks.
LIKELIHOODS: dict[Kind, Callable] = {
    IMAGES: lambda cfg: (bernoulli_nll, Identity),
    SPEECH: lambda cfg: ({"laplace": laplace_nll, "gaussian": gaussian_nll}[cfg.speech_likelihood](cfg.speech_scale),
                         lambda: Standardise(cfg.audio.n_mels)),
}
NETWORKS: dict[Kind, Callable[[ModelConfig], Networks]] = {
    IMAGES: lambda cfg: Networks(cfg.image_decoder, cfg.image_conv_extra, cfg.image_conv_batchnorm, cfg.conv_channels),
    SPEECH: lambda cfg: Networks(cfg.speech_decoder, 0, False, cfg.speech_conv_channels or cfg.conv_channels,
                                 cfg.speech_hidden),
}


def _network_factories(cfg: ModelConfig, shape, nets_of: Networks):
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.architecture!r}; use one of {ARCHITECTURES}")
    encoder_kind, _, decoder_kind = cfg.architecture.partition("-")
    decoder_kind = nets_of.decoder or decoder_kind or encoder_kind
    size = cfg.latent_dim + cfg.style_dim  # an input modality's expert also gives its own style
    encoders = {"mlp": lambda: nets.mlp_encoder(shape, cfg.hidden, size),
                "conv": lambda: nets.conv_encoder(shape, cfg.hidden, size, cfg.conv_channels, nets_of.conv_extra,
                                                  nets_of.conv_batchnorm)}
    hidden = nets_of.decoder_hidden or cfg.hidden
    decoders = {"mlp": lambda: nets.mlp_decoder(shape, hidden, size),
                "conv": lambda: nets.conv_decoder(shape, hidden, size, nets_of.decoder_width),
                "conv1d": lambda: nets.time_conv_decoder(shape, hidden, size, nets_of.decoder_width)}
    return encoders[encoder_kind], decoders[decoder_kind]


def build_modalities(cfg: ModelConfig) -> dict[str, Modality]:
    def balance(shape):
        return cfg.reference_dim / math.prod(shape)

    registry = {}
    for name in cfg.modalities:
        data = kind(name)
        shape = data.shape(cfg)
        if data not in LIKELIHOODS:
            raise ValueError(f"{name!r} cannot be an input modality")
        nll, make_norm = LIKELIHOODS[data](cfg)
        output = functools.partial(to_output, torch, name)
        make_encoder, make_decoder = _network_factories(cfg, shape, NETWORKS[data](cfg))
        registry[name] = Modality(name, shape, nll, cfg.recon_weights.get(name, 1.0) * balance(shape),
                                  make_encoder, make_decoder, output, make_norm, data, cfg.n_classes)
    registry[LABEL] = Modality(
        LABEL, (), categorical_nll, cfg.label_weight,
        lambda: nets.label_encoder(cfg.n_classes, cfg.hidden, cfg.latent_dim),
        lambda: nets.label_head(cfg.n_classes, cfg.latent_dim),
        functools.partial(to_output, torch, LABEL), Identity, LABELS, cfg.n_classes,
    )
    return registry
