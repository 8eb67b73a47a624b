"""The multimodal VAE: one encoder and one decoder per modality, fused by a product of experts."""

from __future__ import annotations

import torch
from torch import nn

from .config import INPUT_MODALITIES, LABEL, ModelConfig
from .modalities import build_modalities
from .poe import product_of_experts, subset_mask, subsets


class Standardise(nn.Module):
    """Per-bin standardisation of the log-mel; its statistics are buffers, so they travel with the weights."""

    def __init__(self, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins, 1))
        self.register_buffer("std", torch.ones(n_bins, 1))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean.copy_(mean.reshape_as(self.mean))
        self.std.copy_(std.reshape_as(self.std).clamp_min(1e-3))

    def forward(self, x):
        return (x - self.mean) / self.std

    def inverse(self, y):
        return y * self.std + self.mean


class MVAE(nn.Module):
    def __init__(self, cfg: ModelConfig, encoders: dict | None = None, decoders: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.modalities = build_modalities(cfg)
        self.names = tuple(self.modalities)  # the input modalities, then the label
        self.encoders = nn.ModuleDict(encoders or {n: m.make_encoder() for n, m in self.modalities.items()})
        self.decoders = nn.ModuleDict(decoders or {n: m.make_decoder() for n, m in self.modalities.items()})
        if set(self.encoders) != set(self.names) or set(self.decoders) != set(self.names):
            raise ValueError(f"encoders and decoders must be given for exactly {self.names}")
        self.speech_norm = Standardise(cfg.audio.n_mels)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != LABEL)

    def training_subsets(self) -> list[tuple[str, ...]]:
        """Every non-empty subset of the inputs, plus the label alone (so a digit can generate everything)."""
        return subsets(self.input_names) + [(LABEL,)]

    def experts(self, inputs: dict[str, torch.Tensor]):
        """Run each given modality's encoder once: returns names, mu (E, B, D), logvar (E, B, D)."""
        given = [n for n in self.names if n in inputs]
        if not given:
            raise ValueError("at least one modality must be given")
        outs = [self.encoders[n](inputs[n]) for n in given]
        return given, torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def posterior(self, inputs: dict[str, torch.Tensor], subset_list=None):
        """The PoE posterior of each subset (default: all given modalities together) -> (S, B, D) twice."""
        given, mu, logvar = self.experts(inputs)
        if subset_list is None:
            subset_list = [tuple(given)]
        missing = {n for s in subset_list for n in s} - set(given)
        if missing:
            raise ValueError(f"subsets name modalities that were not given: {sorted(missing)}")
        return product_of_experts(mu, logvar, subset_mask(subset_list, given))

    def decode(self, z: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Decoder outputs (likelihood parameters) for a batch of latents (N, D)."""
        return {n: self.decoders[n](z) for n in (names or self.names)}

    def outputs(self, z: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Decoded data: image probabilities, raw (de-standardised) log-mel, class probabilities."""
        out = {}
        for name, value in self.decode(z, names).items():
            value = self.modalities[name].to_output(value)
            out[name] = self.speech_norm.inverse(value) if name == "speech" else value
        return out

    def classify(self, mu: torch.Tensor) -> torch.Tensor:
        return self.decoders[LABEL](mu)


def normalise_inputs(model: MVAE, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw model-space inputs (speech as raw log-mel) -> what the encoders take."""
    return {n: model.speech_norm(x) if n == "speech" else x for n, x in inputs.items()}


__all__ = ["MVAE", "Standardise", "normalise_inputs", "INPUT_MODALITIES"]
