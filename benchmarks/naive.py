"""The baseline the batched objective is measured against: one whole-model call per subset.

This is how the seed (and the public MVAE code) trains: for every subset of the inputs it runs the
encoders of that subset, fuses them, samples, runs every decoder and adds up that subset's ELBO. The
loss is the same as `mvae.model.objectives.mvae_objective`; only the amount of work differs, so it lives here
and not in the library.
"""

from __future__ import annotations

import torch

from mvae.model.model import MVAE
from mvae.model.poe import kl_to_prior


def naive_loss(model: MVAE, batch: dict[str, torch.Tensor], beta: float = 1.0, subset_list=None,
               sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """`batch` is in the model's data space, as for mvae_objective; returns the same scalar loss."""
    subset_list = subset_list or model.training_subsets()
    total, targets = 0.0, model.normalise(batch)
    for subset in subset_list:
        mu, logvar = model.posterior({name: batch[name] for name in subset})  # (1, B, D): this subset only
        mu, logvar = mu[0], logvar[0]
        z = mu
        if sample:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device) if generator is not None \
                else torch.randn_like(mu)
            z = mu + noise * (0.5 * logvar).exp()
        weighted = torch.zeros(mu.shape[0], device=mu.device)
        for name, out in model.decode(z).items():
            modality = model.modalities[name]
            weighted = weighted + modality.weight * modality.nll(out.unsqueeze(0), targets[name].unsqueeze(0))[0]
        kl = kl_to_prior(mu, logvar).sum(-1)
        total = total + (weighted + beta * kl).mean()
    return total
