"""Subsets of the experts, and their product in torch, with the N(0, I) prior expert counted exactly once."""

from __future__ import annotations

import itertools

import torch

from ..runtime import forward


def subsets(names) -> list[tuple[str, ...]]:
    """Every non-empty subset of `names`, smallest first, in a stable order."""
    names = tuple(names)
    return [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]


def subset_key(subset) -> str:
    """The name of a subset in logs and reports: its modalities joined by "+"."""
    return "+".join(subset)


def subset_mask(subset_list, expert_names) -> torch.Tensor:
    """(S, E) bool: which of the E experts take part in each subset."""
    return torch.tensor([[name in s for name in expert_names] for s in subset_list], dtype=torch.bool)


def product_of_experts(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor | None = None):
    """Fuse experts (E, B, D) and the N(0, I) prior into one Gaussian per subset of the mask (S, E): returns
    (S, B, D) twice. The arithmetic is the lean runtime's too (`mvae.runtime.forward.product_of_experts`)."""
    return forward.product_of_experts(torch, mu, logvar, None if mask is None else mask.to(mu.device))


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
