"""The modality registry: each entry bundles shape, networks, likelihood and output transform.

Adding a modality is one entry in `build_modalities`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ARCHITECTURES, IMAGE_MODALITIES, IMAGE_SIZE, LABEL, ModelConfig
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


@dataclass
class Modality:
    name: str
    shape: tuple[int, ...]
    nll: Callable  # (decoder output (S, B, *shape), target (S, B, *shape)) -> (S, B), in nats
    weight: float  # multiplies the nll in the training loss
    make_encoder: Callable[[], nn.Module]
    make_decoder: Callable[[], nn.Module]
    to_output: Callable[[torch.Tensor], torch.Tensor]  # decoder output -> the modality's data space


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
        if name in IMAGE_MODALITIES:
            shape, nll, to_output = (IMAGE_SIZE, IMAGE_SIZE), bernoulli_nll, torch.sigmoid
        elif name == "speech":
            shape = (cfg.audio.n_mels, cfg.audio.n_frames)
            nll = {"laplace": laplace_nll, "gaussian": gaussian_nll}[cfg.speech_likelihood](cfg.speech_scale)
            to_output = nn.Identity()
        else:
            raise ValueError(f"unknown modality {name!r}")
        make_encoder, make_decoder = _network_factories(cfg, shape, digits=name in IMAGE_MODALITIES)
        registry[name] = Modality(name, shape, nll, cfg.recon_weights.get(name, 1.0) * balance(shape),
                                  make_encoder, make_decoder, to_output)
    registry[LABEL] = Modality(
        LABEL, (), categorical_nll, cfg.label_weight,
        lambda: nets.label_encoder(cfg.n_classes, cfg.hidden, cfg.latent_dim),
        lambda: nets.label_head(cfg.n_classes, cfg.latent_dim),
        lambda logits: torch.softmax(logits, dim=-1),
    )
    return registry
