"""The subsampled MVAE objective: the ELBO of every subset of inputs, each reconstructing everything.

Encoders run once per batch; the subset posteriors are precision sums over those expert outputs, and
every decoder runs once on the latents of all subsets stacked into one batch, or, with `decoded_subsets`,
on those of the joint posterior and a few subsets drawn per example (an unbiased estimate of the same sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import LABEL
from .model import MVAE, standard_normal
from .poe import kl_to_prior, product_of_experts, subset_key


@dataclass
class Objective:
    loss: torch.Tensor  # scalar to minimise: weighted reconstructions + beta * KL, summed over subsets
    subsets: list[tuple[str, ...]]
    nll: dict[str, torch.Tensor]  # modality -> (S,) mean nll per example, in nats
    kl: torch.Tensor  # (S,) mean KL per example: the shared latent and the given modalities' styles
    elbo: torch.Tensor  # (S,) mean unweighted ELBO per example: -(sum of nll) - KL
    correct: torch.Tensor  # (S,) fraction of the batch whose label the subset's posterior mean predicts
    swap: torch.Tensor | None = None  # the style-swap cross-entropy (ln 10 when the drawn digits read as chance)

    def log(self) -> dict[str, float]:
        """Every term, per subset, as plain floats for logging."""
        out = {"loss": self.loss.item(), "swap": float(self.swap) if self.swap is not None else 0.0}
        for i, s in enumerate(self.subsets):
            key = subset_key(s)
            out[f"elbo/{key}"] = float(self.elbo[i])
            out[f"kl/{key}"] = float(self.kl[i])
            out[f"acc/{key}"] = float(self.correct[i])
            for name, values in self.nll.items():
                out[f"nll/{name}|{key}"] = float(values[i])
        return out


def mvae_objective(model: MVAE, batch: dict[str, torch.Tensor], beta: float = 1.0,
                   subset_list=None, sample: bool = True, generator: torch.Generator | None = None,
                   targets: dict[str, torch.Tensor] | None = None) -> Objective:
    """`batch` holds every modality in the model's data space (speech as raw log-mel) and the label; each
    reconstruction is scored in its encoder's input space (speech standardised), against `targets` (in the
    data space) for the modalities it holds, else against the batch's own items."""
    subset_list = subset_list or model.training_subsets()
    encoded = model.encode(batch)
    mu, logvar = model.posterior(subset_list=subset_list, encoded=encoded)  # (S, B, D)
    n_subsets, batch_size, latent_dim = mu.shape
    z = mu + standard_normal(mu, generator) * (0.5 * logvar).exp() if sample else mu
    kl = kl_to_prior(mu, logvar).sum(-1)  # (S, B)
    priced = model.cfg.shared_kl_weight * kl
    # A given modality reconstructs itself with its own style. A missing one takes its style from the
    # prior (MMVAE+) or, with cross_style="own", from its own encoder (DMVAE); either way only the shared
    # latent can tell its decoder which digit to make.
    own_everywhere = model.cfg.cross_style == "own"
    styles, own_styles = {}, {}
    for name, (style_mu, style_logvar) in encoded.styles.items():
        present = torch.tensor([own_everywhere or name in s for s in subset_list], device=mu.device)[:, None, None]
        own = style_mu + standard_normal(style_mu, generator) * (0.5 * style_logvar).exp() if sample else style_mu
        drawn = mu.new_zeros(n_subsets, *style_mu.shape)  # the prior's mean when nothing is sampled
        if sample:
            drawn = model.cfg.cross_style_scale * standard_normal(drawn, generator)
        styles[name] = torch.where(present, own.unsqueeze(0), drawn)
        own_styles[name] = own
        style_kl = present[:, :, 0] * kl_to_prior(style_mu, style_logvar).sum(-1)
        kl, priced = kl + style_kl, priced + model.cfg.style_kl_weights.get(name, 1.0) * style_kl

    # Which subsets each example is decoded from (rows (K, B)), and how much each decoded term counts towards
    # the sum over all subsets: every one once when all are decoded, else an unbiased estimate of that sum.
    rows, counts = decoded_rows(model, subset_list, batch_size, sample, mu.device, generator)
    decoded_subsets = rows.shape[0]

    def pick(values):  # (S, B, ...) -> (K * B, ...): each example's decoded subsets
        index = rows.view(*rows.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
        return values.gather(0, index).flatten(0, 1)

    decoded = model.decode_parts(pick(z), {name: pick(style) for name, style in styles.items()})
    nll, weighted = {}, torch.zeros(decoded_subsets, batch_size, device=mu.device)
    wanted = model.normalise(targets or {})
    for name, out in decoded.items():
        fed = wanted.get(name, encoded.inputs[name])
        target = fed.unsqueeze(0).expand(decoded_subsets, *fed.shape)
        per_example = model.modalities[name].nll(out.view(decoded_subsets, batch_size, *out.shape[1:]), target)
        nll[name] = per_subset_mean(per_example, rows, n_subsets)
        weighted = weighted + model.modalities[name].weight * per_example
    swapped = style_swap(model, z, own_styles, batch[LABEL], generator) if model.cfg.swap_weight else mu.new_zeros(())
    loss = (counts * weighted).sum(0).mean() + (beta * priced).mean(dim=1).sum() + model.cfg.swap_weight * swapped

    with torch.no_grad():
        predicted = model.classify(mu).argmax(-1)
        correct = (predicted == batch["label"].unsqueeze(0)).float().mean(dim=1)
        elbo = -(sum(nll.values()) + kl.mean(dim=1))
    return Objective(loss, list(subset_list), {k: v.detach() for k, v in nll.items()}, kl.mean(dim=1).detach(),
                     elbo.detach(), correct, swapped.detach())


def decoded_rows(model: MVAE, subset_list, batch_size: int, sample: bool, device,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The subsets each example is decoded from, as rows (K, B) of indices into `subset_list`, and the count
    (K, B) each decoded term stands for in the sum over subsets.

    Every subset, each counted once, unless the config's `decoded_subsets` k is below their number and the
    terms are sampled: then the joint posterior of the inputs (when the list has it) and k - 1 other subsets
    drawn without replacement, each standing for its share of those not decoded."""
    n_subsets, k = len(subset_list), model.cfg.decoded_subsets
    if not sample or not 0 < k < n_subsets:
        rows = torch.arange(n_subsets, device=device)[:, None].expand(n_subsets, batch_size)
        return rows, torch.ones(n_subsets, batch_size, device=device)
    joint = tuple(model.input_names)
    fixed = [i for i, s in enumerate(subset_list) if tuple(s) == joint][:1]
    order = torch.rand(batch_size, n_subsets, generator=generator,
                       device=generator.device if generator is not None else None).to(device)
    if fixed:
        order[:, fixed[0]] = -1.0  # sorts first: every example is decoded from the joint posterior
    rows = order.argsort(dim=1)[:, :k].T.contiguous()
    drawn = k - len(fixed)
    counts = torch.full((k, batch_size), (n_subsets - len(fixed)) / drawn, device=device)
    if fixed:
        counts[0] = 1.0
    return rows, counts


def per_subset_mean(per_example: torch.Tensor, rows: torch.Tensor, n_subsets: int) -> torch.Tensor:
    """(K, B) values of the decoded terms -> (S,) the mean over the examples decoded from each subset."""
    flat = rows.flatten()
    total = per_example.new_zeros(n_subsets).index_add_(0, flat, per_example.detach().flatten())
    seen = per_example.new_zeros(n_subsets).index_add_(0, flat, torch.ones_like(flat, dtype=per_example.dtype))
    return total / seen.clamp_min(1.0)


def style_swap(model: MVAE, z: torch.Tensor, own_styles: dict[str, torch.Tensor], labels: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy, summed over the styled modalities, of reading back each pair's digit after drawing
    it from the shared latent of a random subset (the label alone among them) in a style that is not the
    pair's own: another item's for the first half of the batch, the prior's for the rest. Gradients reach
    the decoders and the encoders behind the shared latent; the reading encoder's weights are detached and
    it runs in eval mode, so it judges by what it learnt from real data and its batch statistics stay real."""
    n_subsets, batch_size, _ = z.shape
    rows = torch.arange(batch_size, device=z.device)

    def draw(high, size):
        return torch.randint(0, high, (size,), generator=generator,
                             device=generator.device if generator is not None else None).to(z.device)

    total = z.new_zeros(())
    for name in own_styles:
        other = own_styles[name][draw(batch_size, batch_size)]
        half = rows < batch_size // 2
        style = torch.where(half[:, None], other, standard_normal(other, generator))
        made = model.decode_parts(z[draw(n_subsets, batch_size), rows], {name: style}, [name])[name]
        made = model.modalities[name].to_output(made)  # into the reading encoder's input space
        reader = model.encoders[name]
        was_training = reader.training
        reader.eval()
        params = {k: v.detach() for k, v in reader.named_parameters()}
        read_mu, read_logvar = torch.func.functional_call(reader, params, (made,))
        reader.train(was_training)
        shared = model.cfg.latent_dim
        read, _ = product_of_experts(read_mu[None, :, :shared], read_logvar[None, :, :shared])
        total = total + F.cross_entropy(model.classify(read[0]), labels)
    return total


def beta_at(step: int, steps_per_epoch: int, beta: float, warmup_epochs: float) -> float:
    """Linear KL warm-up from 0 to beta over the first warmup_epochs."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))
