"""The multimodal VAE: one encoder and one decoder per modality, fused by a product of experts."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LABEL, ModelConfig
from ..encoded import Encoded
from ..runtime.forward import ForwardPass
from .modalities import Standardise, build_modalities
from .poe import product_of_experts, subset_mask, subsets


def standard_normal(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) noise shaped like `like`, on its device, drawn on the generator's own device."""
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


class MVAE(nn.Module, ForwardPass):
    """The torch model: its networks, normalisers and training-time posteriors. Encoding, the full posterior and
    decoding are `ForwardPass`'s, the lean runtime's too."""

    xp = torch

    def __init__(self, cfg: ModelConfig, encoders: dict | None = None, decoders: dict | None = None):
        super().__init__()
        self.cfg = cfg
        self.modalities = build_modalities(cfg)
        self.names = tuple(self.modalities)  # the input modalities, then the label
        self.encoders = nn.ModuleDict(encoders or {n: m.make_encoder() for n, m in self.modalities.items()})
        self.decoders = nn.ModuleDict(decoders or {n: m.make_decoder() for n, m in self.modalities.items()})
        if set(self.encoders) != set(self.names) or set(self.decoders) != set(self.names):
            raise ValueError(f"encoders and decoders must be given for exactly {self.names}")
        # Each modality's normaliser is registered as `<name>_norm`, so that those with statistics (the
        # log-mel's) keep the state-dict keys of every checkpoint written before, `speech_norm.mean/std`.
        for name, modality in self.modalities.items():
            self.add_module(f"{name}_norm", modality.make_norm())

    def training_subsets(self) -> list[tuple[str, ...]]:
        """Every non-empty subset of the inputs, plus the label alone (so a digit can generate everything)."""
        return subsets(self.input_names) + [(LABEL,)]

    def norm(self, name: str) -> nn.Module:
        """The modality's normaliser: data -> its encoder's input space, and `inverse` back."""
        return self.get_submodule(f"{name}_norm")

    def normalise(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model-space data (speech as raw log-mel) -> what the encoders take."""
        return {n: self._feed(n, x) for n, x in inputs.items()}

    # -- the hooks of the forward pass ---------------------------------------------------------------------
    def _feed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.norm(name)(x)

    def _expert(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoders[name](x)

    def _decoder(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return self.decoders[name](z)

    def _inverse(self, name: str, y: torch.Tensor) -> torch.Tensor:
        return self.norm(name).inverse(y)

    def posterior(self, inputs: dict[str, torch.Tensor] | None = None, subset_list=None,
                  encoded: Encoded | None = None):
        """The PoE posterior of the shared latent for each subset (default: all given modalities together)
        -> (S, B, D) twice. Pass `encoded` to reuse encoder outputs instead of running the encoders again."""
        encoded = encoded or self.encode(inputs)
        given = list(encoded.names)
        if subset_list is None:
            subset_list = [tuple(given)]
        missing = {n for s in subset_list for n in s} - set(given)
        if missing:
            raise ValueError(f"subsets name modalities that were not given: {sorted(missing)}")
        return product_of_experts(encoded.mu, encoded.logvar, subset_mask(subset_list, given))

    @torch.no_grad()
    def generate(self, inputs: dict[str, torch.Tensor], targets, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Decoded data of `targets` given `inputs` (in the model's data space, as for `encode`).

        The digit comes from the fused shared posterior; a target that was given keeps its own style, any
        other draws its style from the prior. temperature scales every draw: 0 decodes the means.
        """
        mu, logvar = self.full_posterior(inputs)
        latents = mu + temperature * (0.5 * logvar).exp() * standard_normal(mu, generator)
        return self.outputs(latents, list(targets))

    def classify(self, mu: torch.Tensor) -> torch.Tensor:
        return self.decoders[LABEL](mu)


__all__ = ["MVAE", "Encoded", "Standardise", "standard_normal"]
