"""Product of Gaussian experts, with the N(0, I) prior expert counted exactly once."""

from __future__ import annotations

import itertools

import torch


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
    """Fuse experts (E, B, D) into one Gaussian per subset of the mask (S, E): returns (S, B, D) twice.

    The product of Gaussians has precision sum_i 1/var_i and mean sum_i mu_i/var_i / sum_i 1/var_i.
    Both are computed from -logvar with logsumexp / softmax, so neither a tiny nor a huge variance
    overflows; the prior N(0, I) is prepended here and nowhere else.
    """
    if mask is None:
        mask = torch.ones(1, mu.shape[0], dtype=torch.bool, device=mu.device)
    mask = mask.to(mu.device)
    prior = torch.zeros_like(mu[:1])
    mu_all = torch.cat([prior, mu])  # (E+1, B, D)
    neg_logvar = torch.cat([prior, -logvar])
    present = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # (S, E+1)
    neg_logvar = neg_logvar.unsqueeze(0).masked_fill(~present[:, :, None, None], float("-inf"))
    joint_logvar = -torch.logsumexp(neg_logvar, dim=1)
    joint_mu = (torch.softmax(neg_logvar, dim=1) * mu_all.unsqueeze(0)).sum(dim=1)
    return joint_mu, joint_logvar


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
