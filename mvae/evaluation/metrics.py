"""Test-split evaluation: ELBO, reconstruction given and missing, label accuracy from every subset."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import LABEL
from ..data.banks import image_bank
from ..data.paired import Bank, PairedDataset, Pairs
from ..model.model import MVAE
from ..model.objectives import mvae_objective
from ..model.poe import subset_key
from .judges import extra_names


@torch.no_grad()
def evaluate_pairs(model: MVAE, dataset: PairedDataset, pairs: Pairs, batch_size: int = 512, device="cpu",
                   seed: int = 0, progress: bool = False) -> dict:
    """Averages of every objective term per subset over the pairs, with one latent sample each."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    subset_list = model.training_subsets()
    totals: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(len(subset_list)))
    seen = 0
    n_batches = -(-len(pairs) // batch_size)
    for _, batch in tqdm(dataset.batches(pairs, batch_size, device=device), total=n_batches,
                         desc="evaluate", disable=not progress, leave=False):
        n = len(batch[LABEL])
        out = mvae_objective(model, batch, subset_list=subset_list, generator=generator)
        totals["elbo"] += out.elbo.cpu() * n
        totals["kl"] += out.kl.cpu() * n
        totals["accuracy"] += out.correct.cpu() * n
        for name, values in out.nll.items():
            totals[f"nll/{name}"] += values.cpu() * n
        seen += n
    means = {k: (v / seen).tolist() for k, v in totals.items()}
    return summarise(subset_list, means, model.input_names)


def summarise(subset_list, means: dict[str, list[float]], input_names) -> dict:
    keys = [subset_key(s) for s in subset_list]
    per_subset = {key: {term: values[i] for term, values in means.items()} for i, key in enumerate(keys)}
    input_subsets = [i for i, s in enumerate(subset_list) if LABEL not in s]
    recon = {}
    for name in input_names:
        given = [means[f"nll/{name}"][i] for i in input_subsets if name in subset_list[i]]
        missing = [means[f"nll/{name}"][i] for i in input_subsets if name not in subset_list[i]]
        recon[name] = {"given": sum(given) / len(given), "missing": sum(missing) / len(missing)}
    full = subset_key(tuple(input_names))
    return {
        "elbo": per_subset[full]["elbo"],
        "elbo_mean_over_subsets": sum(means["elbo"][i] for i in input_subsets) / len(input_subsets),
        "accuracy": {k: per_subset[k]["accuracy"] for k in keys},
        "recon": recon,
        "per_subset": per_subset,
    }


@torch.no_grad()
def unimodal_accuracy(model: MVAE, name: str, bank: Bank, batch_size: int = 1024, device="cpu") -> float:
    """Label accuracy from one modality alone over every item of its bank (no pairing involved)."""
    model.eval()
    correct = 0
    for start in range(0, len(bank.labels), batch_size):
        items = bank.items[start:start + batch_size].to(device)
        mu, _ = model.posterior({name: items})
        predicted = model.classify(mu[0]).argmax(-1).cpu()
        correct += int((predicted == torch.as_tensor(bank.labels[start:start + batch_size])).sum())
    return correct / len(bank.labels)


def accuracy_figures(model: MVAE, test_banks: dict[str, Bank], data_dir) -> dict:
    """Label accuracy from each modality alone on its test split, and on the held-out real sets of other
    writers of the same script (Dig-MNIST, Hoda's remaining digits), keyed "<modality>/<stem>"."""
    alone = {n: unimodal_accuracy(model, n, b) for n, b in test_banks.items()}
    extra = {f"{script}/{stem}": unimodal_accuracy(model, script, image_bank(data_dir, script, "extra"))
             for script, stem in extra_names().items() if script in test_banks}
    return {"unimodal_accuracy": alone, "extra_accuracy": extra}


# -- generative metrics: each compares what a model made with real test data ------------------------------
INK, SOLID = 0.25, 0.75  # a pixel above INK is ink; ink up to SOLID is a half-tone


def mean_pairwise_distance(items: torch.Tensor) -> float:
    """Mean L2 distance between every two of the items (n, ...), each flattened; 0 for fewer than two."""
    flat = torch.as_tensor(items).flatten(1).double()
    if len(flat) < 2:
        return 0.0
    return float(torch.pdist(flat).mean())


def diversity(generated: torch.Tensor, generated_labels, real: torch.Tensor, real_labels) -> float:
    """Per class, the mean pairwise distance of the generated items over that of the real ones, averaged
    over the classes present in both: 1 when samples vary as much as real data, 0 when they are all alike."""
    generated_labels, real_labels = np.asarray(generated_labels), np.asarray(real_labels)
    ratios = []
    for c in np.intersect1d(generated_labels, real_labels):
        spread_real = mean_pairwise_distance(real[torch.as_tensor(real_labels == c)])
        if spread_real > 0:
            ratios.append(mean_pairwise_distance(generated[torch.as_tensor(generated_labels == c)]) / spread_real)
    if not ratios:
        raise ValueError("no class has two or more real items that differ, so diversity has no reference")
    return float(np.mean(ratios))


def halftone_share(images: torch.Tensor, ink: float = INK, solid: float = SOLID) -> float:
    """Among the ink pixels (> ink) of all the images, the share that are half-tones (<= solid): 0 for
    a binary digit, near 1 for a faint or blurred one."""
    x = torch.as_tensor(images)
    inked = x > ink
    n_ink = int(inked.sum())
    return float((inked & (x <= solid)).sum()) / n_ink if n_ink else 0.0


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d), as FID does:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2).

    The trace of the matrix square root is taken from the eigenvalues of the symmetric S_a^1/2 S_b S_a^1/2,
    which equals tr((S_a S_b)^1/2) and stays real where a general sqrtm can turn complex.
    """
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two feature sets (n >= 2, d) of the same width, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross)
