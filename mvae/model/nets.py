"""Encoder and decoder networks. Any nn.Module with the same input and output shapes can replace them.

An encoder maps a batch of one modality to (mu, logvar) of its Gaussian expert; a decoder maps z to
that modality's likelihood parameters (logits for images, the mean log-mel for speech).
"""

from __future__ import annotations

import math

from torch import nn

from ..runtime.forward import halves


class Encoder(nn.Module):
    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x):
        return halves(self.head(self.body(x)))


def mlp_encoder(shape, hidden: int, latent_dim: int) -> Encoder:
    body = nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
    )
    return Encoder(body, hidden, latent_dim)


def mlp_decoder(shape, hidden: int, latent_dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
        nn.Linear(hidden, math.prod(shape)), nn.Unflatten(1, tuple(shape)),
    )


def label_encoder(n_classes: int, hidden: int, latent_dim: int) -> Encoder:
    body = nn.Sequential(nn.Embedding(n_classes, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
    return Encoder(body, hidden, latent_dim)


def label_head(n_classes: int, latent_dim: int) -> nn.Module:
    """The seed's linear classifier from z."""
    return nn.Linear(latent_dim, n_classes)


def _conv_stack(channels: list[int], extra: int = 0, batchnorm: bool = False) -> list[nn.Module]:
    """Stride-2 convs, each followed by `extra` 3x3 convs at the halved resolution, where they are cheap."""
    def block(conv):
        return [conv, nn.BatchNorm2d(conv.out_channels), nn.SiLU()] if batchnorm else [conv, nn.SiLU()]

    layers = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += block(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
        for _ in range(extra):
            layers += block(nn.Conv2d(c_out, c_out, 3, padding=1))
    return layers


def _deconv_stack(channels: list[int], deconv=nn.ConvTranspose2d) -> list[nn.Module]:
    """Transposed convs that each double the resolution, SiLU between them."""
    layers = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(deconv(c_in, c_out, 4, stride=2, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.SiLU())
    return layers


def _halvings(side: int) -> int:
    """How many stride-2 steps bring a side of 28 or 64 down to 7 or 8 pixels."""
    return int(math.log2(side // 7 if side % 7 == 0 else side // 8))


def conv_encoder(shape, hidden: int, latent_dim: int, width: int, extra: int = 0, batchnorm: bool = False) -> Encoder:
    h, w = shape
    downs = _halvings(h)
    channels = [1] + [width * 2**i for i in range(downs)]
    side_h, side_w = h // 2**downs, w // 2**downs
    body = nn.Sequential(
        AddChannel(),
        *_conv_stack(channels, extra, batchnorm), nn.Flatten(),
        nn.Linear(channels[-1] * side_h * side_w, hidden), nn.SiLU(),
    )
    return Encoder(body, hidden, latent_dim)


def conv_decoder(shape, hidden: int, latent_dim: int, width: int) -> nn.Module:
    h, w = shape
    downs = _halvings(h)
    channels = [width * 2**i for i in reversed(range(downs))] + [1]
    side_h, side_w = h // 2**downs, w // 2**downs
    return nn.Sequential(
        nn.Linear(latent_dim, hidden), nn.SiLU(),
        nn.Linear(hidden, channels[0] * side_h * side_w), nn.SiLU(),
        nn.Unflatten(1, (channels[0], side_h, side_w)),
        *_deconv_stack(channels), DropChannel(),
    )


def time_conv_decoder(shape, hidden: int, latent_dim: int, width: int) -> nn.Module:
    """Transposed 1-D convs along the columns (a log-mel's frames), each column's rows (its mel bins) the
    channels of the last layer; the channels double from `width` towards the latent."""
    rows, cols = shape
    ups = _halvings(cols)
    channels = [width * 2**i for i in reversed(range(ups))] + [rows]
    return nn.Sequential(
        nn.Linear(latent_dim, hidden), nn.SiLU(),
        nn.Linear(hidden, channels[0] * (cols // 2**ups)), nn.SiLU(),
        nn.Unflatten(1, (channels[0], cols // 2**ups)),
        *_deconv_stack(channels, nn.ConvTranspose1d),
    )


class AddChannel(nn.Module):
    def forward(self, x):
        return x.unsqueeze(1)


class DropChannel(nn.Module):
    def forward(self, x):
        return x.squeeze(1)
