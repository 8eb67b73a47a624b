"""Test-split evaluation: ELBO, reconstruction given and missing, label accuracy from every subset."""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm.auto import tqdm

from .config import LABEL
from .data.paired import Bank, PairedDataset, Pairs
from .model import MVAE, normalise_inputs
from .objectives import mvae_objective


def subset_key(subset) -> str:
    return "+".join(subset)


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
        out = mvae_objective(model, normalise_inputs(model, batch), subset_list=subset_list, generator=generator)
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
        mu, _ = model.posterior(normalise_inputs(model, {name: items}))
        predicted = model.classify(mu[0]).argmax(-1).cpu()
        correct += int((predicted == torch.as_tensor(bank.labels[start:start + batch_size])).sum())
    return correct / len(bank.labels)
