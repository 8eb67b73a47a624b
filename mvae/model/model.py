"""The multimodal VAE: one encoder and one decoder per modality, fused by a product of experts."""

from __future__ import annotations

import torch
from torch import nn

from ..config import LABEL, ConfiguredLatent, ModelConfig
from ..encoded import Encoded
from .modalities import Standardise, build_modalities
from .poe import product_of_experts, subset_mask, subsets


def standard_normal(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) noise shaped like `like`, on its device, drawn on the generator's own device."""
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


class MVAE(nn.Module, ConfiguredLatent):
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
        return {n: self.norm(n)(x) for n, x in inputs.items()}

    def encode(self, inputs: dict[str, torch.Tensor]) -> Encoded:
        """Normalise each given modality's data and run its encoder once, splitting the output into shared
        expert and own style. `inputs` are in the model's data space (speech as raw log-mel)."""
        given = [n for n in self.names if n in inputs]
        if not given:
            raise ValueError("at least one modality must be given")
        fed = self.normalise({n: inputs[n] for n in given})
        shared, mus, logvars, styles = self.cfg.latent_dim, [], [], {}
        for name in given:
            mu, logvar = self.encoders[name](fed[name])
            mus.append(mu[:, :shared])
            logvars.append(logvar[:, :shared])
            if name in self.style_names:
                styles[name] = (mu[:, shared:], logvar[:, shared:])
        return Encoded(tuple(given), torch.stack(mus), torch.stack(logvars), styles, fed)

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

    def decode_parts(self, shared: torch.Tensor, styles: dict[str, torch.Tensor], names=None):
        """Decoder outputs from a shared latent (N, D) and each decoded modality's style (N, S)."""
        out = {}
        for name in names or self.names:
            z = torch.cat([shared, styles[name]], dim=-1) if name in self.style_names else shared
            out[name] = self.decoders[name](z)
        return out

    def split(self, latents: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Full latents (N, full_latent_dim) -> shared (N, D) and {modality: style (N, S)}."""
        layout = self.latent_layout()
        return latents[:, layout["shared"]], {n: latents[:, layout[n]] for n in self.style_names}

    def decode(self, latents: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Decoder outputs (likelihood parameters) for a batch of full latents (N, full_latent_dim)."""
        return self.decode_parts(*self.split(latents), names)

    def to_data(self, decoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decoder outputs -> data: image probabilities, raw (de-standardised) log-mel, class probabilities."""
        return {n: self.norm(n).inverse(self.modalities[n].to_output(v)) for n, v in decoded.items()}

    def outputs(self, latents: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Decoded data for a batch of full latents."""
        return self.to_data(self.decode(latents, names))

    def full_posterior(self, inputs: dict[str, torch.Tensor] | Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the full latent given all inputs: the fused shared posterior, each given
        modality's style posterior, and the prior N(0, I) for the style of each missing one -> (B, F) twice."""
        encoded = inputs if isinstance(inputs, Encoded) else self.encode(inputs)
        mu, logvar = self.posterior(encoded=encoded)
        mus, logvars = [mu[0]], [logvar[0]]
        for name in self.style_names:
            if name in encoded.styles:
                style_mu, style_logvar = encoded.styles[name]
            else:
                style_mu = style_logvar = mu.new_zeros(mu.shape[1], self.cfg.style_dim)
            mus.append(style_mu)
            logvars.append(style_logvar)
        return torch.cat(mus, -1), torch.cat(logvars, -1)

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
