"""The subsampled MVAE objective: the ELBO of every subset of inputs, each reconstructing everything.

Encoders run once per batch; the subset posteriors are precision sums over those expert outputs, and
every decoder runs once on the latents of all subsets stacked into one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import MVAE, standard_normal
from .poe import kl_to_prior


@dataclass
class Objective:
    loss: torch.Tensor  # scalar to minimise: weighted reconstructions + beta * KL, summed over subsets
    subsets: list[tuple[str, ...]]
    nll: dict[str, torch.Tensor]  # modality -> (S,) mean nll per example, in nats
    kl: torch.Tensor  # (S,) mean KL per example: the shared latent and the given modalities' styles
    elbo: torch.Tensor  # (S,) mean unweighted ELBO per example: -(sum of nll) - KL
    correct: torch.Tensor  # (S,) fraction of the batch whose label the subset's posterior mean predicts

    def log(self) -> dict[str, float]:
        """Every term, per subset, as plain floats for logging."""
        out = {"loss": self.loss.item()}
        for i, s in enumerate(self.subsets):
            key = "+".join(s)
            out[f"elbo/{key}"] = float(self.elbo[i])
            out[f"kl/{key}"] = float(self.kl[i])
            out[f"acc/{key}"] = float(self.correct[i])
            for name, values in self.nll.items():
                out[f"nll/{name}|{key}"] = float(values[i])
        return out


def mvae_objective(model: MVAE, batch: dict[str, torch.Tensor], beta: float = 1.0,
                   subset_list=None, sample: bool = True, generator: torch.Generator | None = None) -> Objective:
    """`batch` holds every modality in the encoders' space (speech standardised) and the label."""
    subset_list = subset_list or model.training_subsets()
    encoded = model.encode(batch)
    mu, logvar = model.posterior(subset_list=subset_list, encoded=encoded)  # (S, B, D)
    n_subsets, batch_size, latent_dim = mu.shape
    z = mu + standard_normal(mu, generator) * (0.5 * logvar).exp() if sample else mu
    kl = kl_to_prior(mu, logvar).sum(-1)  # (S, B)
    priced = model.cfg.shared_kl_weight * kl
    # A given modality reconstructs itself with its own style; a missing one draws its style from the
    # (auxiliary) prior, so only the shared latent can tell its decoder which digit to make.
    styles = {}
    for name, (style_mu, style_logvar) in encoded.styles.items():
        present = torch.tensor([name in s for s in subset_list], device=mu.device)[:, None, None]
        own = style_mu + standard_normal(style_mu, generator) * (0.5 * style_logvar).exp() if sample else style_mu
        drawn = mu.new_zeros(n_subsets, *style_mu.shape)  # the prior's mean when nothing is sampled
        if sample:
            drawn = model.cfg.cross_style_scale * standard_normal(drawn, generator)
        styles[name] = torch.where(present, own.unsqueeze(0), drawn).flatten(0, 1)
        style_kl = present[:, :, 0] * kl_to_prior(style_mu, style_logvar).sum(-1)
        kl, priced = kl + style_kl, priced + style_kl
    decoded = model.decode_parts(z.reshape(n_subsets * batch_size, latent_dim), styles)

    nll, weighted = {}, torch.zeros(n_subsets, batch_size, device=mu.device)
    for name, out in decoded.items():
        target = batch[name].unsqueeze(0).expand(n_subsets, *batch[name].shape)
        per_example = model.modalities[name].nll(out.view(n_subsets, batch_size, *out.shape[1:]), target)
        nll[name] = per_example.mean(dim=1)
        weighted = weighted + model.modalities[name].weight * per_example
    loss = (weighted + beta * priced).mean(dim=1).sum()

    with torch.no_grad():
        predicted = model.classify(mu).argmax(-1)
        correct = (predicted == batch["label"].unsqueeze(0)).float().mean(dim=1)
        elbo = -(sum(nll.values()) + kl.mean(dim=1))
    return Objective(loss, list(subset_list), {k: v.detach() for k, v in nll.items()}, kl.mean(dim=1).detach(),
                     elbo.detach(), correct)


def beta_at(step: int, steps_per_epoch: int, beta: float, warmup_epochs: float) -> float:
    """Linear KL warm-up from 0 to beta over the first warmup_epochs."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))
