import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mvae.config import ModelConfig
from mvae.model.model import MVAE
from mvae.model.objectives import beta_at, decoded_rows, mvae_objective
from mvae.model.poe import kl_to_prior
from tests.helpers import tiny_model_and_batch


@pytest.fixture
def tiny():
    return tiny_model_and_batch()


def test_subsets_are_the_seven_input_subsets_and_the_label(tiny):
    model, _ = tiny
    got = model.training_subsets()
    assert len(got) == 8 and got[-1] == ("label",)
    assert {len(s) for s in got[:7]} == {1, 2, 3}


def test_every_term_matches_a_hand_computation(tiny):
    model, batch = tiny
    out = mvae_objective(model, batch, beta=0.7, sample=False)
    total = 0.0
    for i, subset in enumerate(out.subsets):
        mu, logvar = model.posterior({k: batch[k] for k in subset})
        mu, logvar = mu[0], logvar[0]
        recon = {
            "farsi": F.binary_cross_entropy_with_logits(model.decoders["farsi"](mu), batch["farsi"],
                                                        reduction="none").sum((1, 2)),
            "kannada": F.binary_cross_entropy_with_logits(model.decoders["kannada"](mu), batch["kannada"],
                                                          reduction="none").sum((1, 2)),
            "speech": ((batch["speech"] - model.decoders["speech"](mu)).abs() + math.log(2.0)).sum((1, 2)),
            "label": F.cross_entropy(model.decoders["label"](mu), batch["label"], reduction="none"),
        }
        kl = kl_to_prior(mu, logvar).sum(-1)
        for name, values in recon.items():
            assert out.nll[name][i].item() == pytest.approx(values.mean().item(), rel=1e-4), (subset, name)
        assert out.kl[i].item() == pytest.approx(kl.mean().item(), rel=1e-4)
        assert out.elbo[i].item() == pytest.approx(-(sum(recon.values()) + kl).mean().item(), rel=1e-4)
        weights = {"farsi": 1.0, "kannada": 1.0, "speech": 784 / 64, "label": 50.0}
        total += (sum(weights[n] * recon[n] for n in recon) + 0.7 * kl).mean().item()
    assert out.loss.item() == pytest.approx(total, rel=1e-4)


def test_dimension_balance_weights():
    model = MVAE(ModelConfig(hidden=8, latent_dim=2))
    assert model.modalities["farsi"].weight == 1.0
    assert model.modalities["speech"].weight == pytest.approx(784 / (64 * 64))
    assert model.modalities["label"].weight == 50.0


def test_encoders_and_decoders_run_once_per_batch(tiny):
    model, batch = tiny
    calls = {}
    for kind in ("encoders", "decoders"):
        for name, module in getattr(model, kind).items():
            module.register_forward_hook(
                lambda m, i, o, key=(kind, name): calls.__setitem__(key, calls.get(key, 0) + 1))
    out = mvae_objective(model, batch)
    # The label head runs a second time, on the posterior means, for the accuracy it reports.
    assert calls.pop(("decoders", "label")) == 2
    assert set(calls.values()) == {1} and len(calls) == 7
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_log_has_every_term_per_subset(tiny):
    model, batch = tiny
    logs = mvae_objective(model, batch).log()
    assert "nll/speech|farsi+kannada" in logs and "acc/label" in logs and "kl/farsi+kannada+speech" in logs
    assert len([k for k in logs if k.startswith("nll/")]) == 8 * 4


def test_beta_warms_up_linearly():
    assert beta_at(0, 100, 2.0, 2.0) == 0.0
    assert beta_at(100, 100, 2.0, 2.0) == pytest.approx(1.0)
    assert beta_at(500, 100, 2.0, 2.0) == 2.0
    assert beta_at(0, 100, 2.0, 0.0) == 2.0


def with_decoded_subsets(model, k):
    model.cfg = dataclasses.replace(model.cfg, decoded_subsets=k)
    return model


def test_each_example_is_decoded_from_the_joint_posterior_and_distinct_drawn_subsets(tiny):
    model = with_decoded_subsets(tiny[0], 3)
    subset_list = model.training_subsets()
    rows, counts = decoded_rows(model, subset_list, 64, True, "cpu", torch.Generator().manual_seed(0))
    assert rows.shape == counts.shape == (3, 64)
    joint = subset_list.index(tuple(model.input_names))
    assert (rows[0] == joint).all()
    assert all(len(set(rows[:, b].tolist())) == 3 for b in range(64))
    # The joint counts once; each drawn term stands for its share of the 7 others not decoded.
    assert (counts[0] == 1).all() and torch.allclose(counts[1:], torch.full((2, 64), 7 / 2))


def test_the_drawn_terms_count_every_subset_once_on_average(tiny):
    model = with_decoded_subsets(tiny[0], 2)
    subset_list = model.training_subsets()
    generator, total, draws = torch.Generator().manual_seed(1), torch.zeros(len(subset_list)), 400
    for _ in range(draws):
        rows, counts = decoded_rows(model, subset_list, 50, True, "cpu", generator)
        total.index_add_(0, rows.flatten(), counts.flatten())
    # Each subset's expected count is 1 per example: 400 x 50 in all; a biased draw would leave one far off.
    assert torch.allclose(total / (draws * 50), torch.ones(len(subset_list)), atol=0.05)


def test_without_sampling_or_with_every_subset_every_subset_is_decoded(tiny):
    model, batch = tiny
    full = mvae_objective(model, batch, sample=False).loss.item()
    assert mvae_objective(with_decoded_subsets(model, 2), batch, sample=False).loss.item() == pytest.approx(full)
    rows, counts = decoded_rows(with_decoded_subsets(model, 8), model.training_subsets(), 5, True, "cpu")
    assert rows.shape == (8, 5) and (counts == 1).all()


def test_decoders_run_on_the_drawn_subsets_only(tiny):
    model, batch = tiny
    with_decoded_subsets(model, 2)
    seen = []
    model.decoders["speech"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    out = mvae_objective(model, batch, generator=torch.Generator().manual_seed(0))
    assert seen == [2 * len(batch["label"])]
    # Every subset still has its logged terms: the joint posterior's from every example, the others' from
    # the examples that drew them (all 8 are drawn by a batch of 64 with near certainty).
    big = {k: v.repeat(13, *([1] * (v.dim() - 1))) for k, v in batch.items()}
    logs = mvae_objective(model, big, generator=torch.Generator().manual_seed(0)).log()
    assert all(math.isfinite(v) and v != 0 for k, v in logs.items() if k.startswith("nll/"))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_targets_replace_what_a_modality_reconstructs(tiny):
    model, batch = tiny
    torch.manual_seed(0)
    same = mvae_objective(model, batch, sample=False, targets={"speech": batch["speech"]})
    plain = mvae_objective(model, batch, sample=False)
    assert torch.allclose(same.loss, plain.loss) and torch.allclose(same.nll["farsi"], plain.nll["farsi"])
    moved = mvae_objective(model, batch, sample=False, targets={"speech": batch["speech"] + 3.0})
    assert torch.allclose(moved.nll["farsi"], plain.nll["farsi"]), "other modalities keep their own items"
    assert not torch.allclose(moved.nll["speech"], plain.nll["speech"])
