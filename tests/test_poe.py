import math

import pytest
import torch

from mvae.model.poe import kl_to_prior, product_of_experts, subset_mask, subsets


def hand_poe(mus, variances):
    """Product of the given Gaussians and the N(0, 1) prior, one dimension, by the textbook formula."""
    precisions = [1.0] + [1.0 / v for v in variances]
    means = [0.0] + list(mus)
    var = 1.0 / sum(precisions)
    return var * sum(m * p for m, p in zip(means, precisions)), var


@pytest.mark.parametrize("mus, variances",
                         [([2.0], [0.5]), ([1.0, -3.0], [0.25, 4.0]), ([0.5, 1.5, -1.0], [1.0, 0.1, 2.0])])
def test_matches_hand_computation(mus, variances):
    mu = torch.tensor(mus).view(-1, 1, 1)
    logvar = torch.tensor(variances).log().view(-1, 1, 1)
    joint_mu, joint_logvar = product_of_experts(mu, logvar)
    want_mu, want_var = hand_poe(mus, variances)
    assert joint_mu.item() == pytest.approx(want_mu, rel=1e-5)
    assert joint_logvar.exp().item() == pytest.approx(want_var, rel=1e-5)


def test_prior_counted_once():
    # One expert that equals the prior: the product of two N(0,1) has variance 1/2, not 1/3.
    _, logvar = product_of_experts(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert logvar.exp().item() == pytest.approx(0.5)


def test_masked_subsets_use_only_their_experts():
    mu = torch.tensor([1.0, 4.0]).view(2, 1, 1)
    logvar = torch.zeros(2, 1, 1)
    names = ("a", "b")
    mask = subset_mask([("a",), ("b",), ("a", "b")], names)
    joint_mu, joint_logvar = product_of_experts(mu, logvar, mask)
    assert joint_mu.flatten().tolist() == pytest.approx([0.5, 2.0, 5.0 / 3.0])
    assert joint_logvar.exp().flatten().tolist() == pytest.approx([0.5, 0.5, 1.0 / 3.0])


def test_extreme_logvars_stay_finite():
    mu = torch.tensor([3.0, -2.0, 1e3]).view(3, 1, 1)
    logvar = torch.tensor([-80.0, 80.0, 60.0]).view(3, 1, 1)
    joint_mu, joint_logvar = product_of_experts(mu, logvar)
    assert torch.isfinite(joint_mu).all() and torch.isfinite(joint_logvar).all()
    # The very confident expert dominates the product.
    assert joint_mu.item() == pytest.approx(3.0, abs=1e-6)
    assert joint_logvar.item() == pytest.approx(-80.0, abs=1e-3)
    grad_mu = mu.clone().requires_grad_()
    out = product_of_experts(grad_mu, logvar)[0].sum()
    out.backward()
    assert torch.isfinite(grad_mu.grad).all()


def test_subset_enumeration():
    got = subsets(["farsi", "kannada", "speech"])
    assert len(got) == 7 and len(set(got)) == 7
    assert got[:3] == [("farsi",), ("kannada",), ("speech",)]
    assert got[-1] == ("farsi", "kannada", "speech")
    assert len(subsets(range(5))) == 2**5 - 1


def test_kl_to_prior_matches_closed_form():
    mu, logvar = torch.tensor([1.0]), torch.tensor([math.log(0.5)])
    want = 0.5 * (1.0 + 0.5 - 1.0 - math.log(0.5))
    assert kl_to_prior(mu, logvar).item() == pytest.approx(want)
    assert kl_to_prior(torch.zeros(3), torch.zeros(3)).abs().max().item() == 0.0
