"""The peer benchmark's judging: the evaluator's judges and metrics applied to any contender through its
adapter (benchmarks/peer_models.py), on one subset of the test pairs that every contender shares.

Only what every contender can do is scored: each modality from the others (MultiVae's models have no label
modality, so nothing is generated from the label), at temperature 1 and at the posterior means. Diversity,
half-tones and the Fréchet distance are those of digits generated at temperature 1 from the other modalities
of each test pair. Label accuracy is a linear probe on the latent of one modality alone, for every contender,
and the label head's own accuracy beside it where a contender has one.
"""

from __future__ import annotations

import numpy as np
import torch

from mvae import registry
from mvae.config import LABEL
from mvae.data.paired import PairedDataset, Pairs
from mvae.evaluation.coherence import CoherenceRun, ModelGenerator, directions
from mvae.evaluation.generation import script_quality

# (temperature, the key its figures are kept under): a posterior sample, then the means.
TEMPERATURES = ((1.0, "t1"), (0.0, "means"))
PROBE_STEPS = 200  # L-BFGS iterations of the linear probe, enough for a softmax on a few dozen features
PROBE_DECAY = 1e-4  # L2 on the probe's weights: a few thousand items in 16-64 dimensions barely need any


def eval_pairs(test: PairedDataset, n: int, seed: int) -> Pairs:
    """`n` of the evaluator's covering test pairs drawn at random (all where n is 0 or more than there are)."""
    pairs = test.covering_pairs()
    rows = np.random.default_rng(seed).permutation(len(pairs))[: n or len(pairs)]
    return Pairs(pairs.labels[rows], {k: v[rows] for k, v in pairs.index.items()})


def seed_everything(seed: int) -> None:
    """MultiVae's models draw from torch's and numpy's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def judge_of_everything(scores: dict[str, dict]) -> str:
    """The judge that read every target (each target's own judge, filed under the speech modality's name): the
    others read speech only, so it is the one with the most directions."""
    return max(scores, key=lambda judge: len(scores[judge]))


def mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def coherence_section(run: CoherenceRun, adapter, front_end, seed: int) -> dict:
    """Per temperature: every direction by every judge, the mean over directions into digits (by the judge
    of everything) and the mean over directions into speech by each speech judge."""
    wanted = directions(adapter.input_names)
    speech = set(registry.names(registry.SPEECH))
    out = {}
    for temperature, key in TEMPERATURES:
        seed_everything(seed)
        generate = ModelGenerator(adapter, front_end, temperature=temperature, seed=seed)
        scores = run.directed(generate, wanted, f"coherence T={temperature:g}")
        main = judge_of_everything(scores)
        into_speech = {judge: mean(v for k, v in by.items() if k.rsplit("->", 1)[1] in speech)
                       for judge, by in scores.items()}
        out[key] = {"directions": scores,
                    "digits": mean(v for k, v in scores[main].items() if k.rsplit("->", 1)[1] not in speech),
                    registry.SPEECH: into_speech}
    return out


@torch.no_grad()
def generation_section(adapter, front_end, judges, test: PairedDataset, pairs: Pairs, per_class: int,
                       batch_size: int, seed: int) -> dict:
    """Diversity, half-tone share (and its ratio over real digits') and Fréchet distance of each script's
    digits generated at temperature 1 from the other modalities of each test pair."""
    rng = np.random.default_rng(seed)
    seed_everything(seed)
    generate = ModelGenerator(adapter, front_end, temperature=1.0, seed=seed)
    out = {}
    for script in (s for s in registry.names(registry.IMAGE) if s in adapter.input_names):
        sources = tuple(n for n in adapter.input_names if n != script)
        made, labels = [], []
        for _, batch in test.batches(pairs, batch_size):
            made.append(generate({k: batch[k] for k in sources}, script))
            labels.append(batch[LABEL])
        out[script] = script_quality(torch.cat(made), torch.cat(labels), test.banks[script], judges[script],
                                     per_class, rng)
    return out


def probe_accuracy(train_x: torch.Tensor, train_y, test_x: torch.Tensor, test_y) -> float:
    """Accuracy of a multinomial logistic regression fitted on standardised latents (L-BFGS)."""
    mu, sd = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x, t = (train_x - mu) / sd, (test_x - mu) / sd
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    n_classes = int(max(y.max().item(), int(np.max(test_y)))) + 1
    linear = torch.nn.Linear(x.shape[1], n_classes)
    optimiser = torch.optim.LBFGS(linear.parameters(), max_iter=PROBE_STEPS, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + PROBE_DECAY * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        predicted = linear(t).argmax(-1)
    return float((predicted == torch.as_tensor(np.asarray(test_y))).float().mean())


def latents(adapter, name: str, items: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([adapter.latent(name, items[i:i + batch_size]) for i in range(0, len(items), batch_size)])


@torch.no_grad()
def accuracy_section(adapter, train_banks: dict, test_banks: dict, n_items: int, batch_size: int, seed: int) -> dict:
    """Label accuracy from each modality alone: the linear probe on its latent (fitted on `n_items` training
    items, scored on as many test items) and, where the contender has one, its label head."""
    rng = np.random.default_rng(seed)
    out = {"probe": {}, "head": {}}
    for name in adapter.input_names:
        train, test = train_banks[name], test_banks[name]
        fit_rows = rng.permutation(len(train.labels))[:n_items]
        test_rows = rng.permutation(len(test.labels))[:n_items]
        test_items = test.items[torch.as_tensor(test_rows)]
        out["probe"][name] = probe_accuracy(
            latents(adapter, name, train.items[torch.as_tensor(fit_rows)], batch_size), train.labels[fit_rows],
            latents(adapter, name, test_items, batch_size), test.labels[test_rows])
        if adapter.head:
            predicted = torch.cat([adapter.classify(name, test_items[i:i + batch_size])
                                   for i in range(0, len(test_items), batch_size)])
            out["head"][name] = float((predicted.numpy() == test.labels[test_rows]).mean())
    return out


def judge_contender(adapter, data, judges, front_end, sizes: dict, seed: int) -> dict:
    """Every figure of one trained contender. `sizes`: eval_pairs, speech_pairs, per_class, probe_items,
    batch_size."""
    adapter.eval()
    test = data.test
    pairs = eval_pairs(test, sizes["eval_pairs"], seed)
    run = CoherenceRun(adapter, front_end, judges, test, pairs, sizes["batch_size"], sizes["speech_pairs"], False)
    figures = {"coherence": coherence_section(run, adapter, front_end, seed),
               "generation": generation_section(adapter, front_end, judges, test, pairs, sizes["per_class"],
                                                sizes["batch_size"], seed),
               "accuracy": accuracy_section(adapter, data.train.banks, test.banks, sizes["probe_items"],
                                            sizes["batch_size"], seed)}
    figures["scored"] = {"pairs": len(pairs), "speech_pairs": len(run.order), "probe_items": sizes["probe_items"]}
    return figures
