import math

import numpy as np
import pytest
import torch

from mvae.model.poe import kl_to_prior, product_of_experts, subset_mask, subsets
from mvae.runtime import forward, ops


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


def test_numpy_and_torch_run_the_same_product_of_experts():
    """The lean runtime (numpy) and the torch model run one product of experts (`mvae.runtime.forward`): on the
    same experts and subsets they agree to float32 rounding, the extreme variances included."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, 4, generator=g) * 10
    logvar = torch.randn(3, 5, 4, generator=g) * 30  # variances from e^-90 to e^90
    mask = subset_mask(subsets("abc"), "abc")
    want_mu, want_logvar = product_of_experts(mu, logvar, mask)
    got_mu, got_logvar = forward.product_of_experts(ops.NUMPY, mu.numpy(), logvar.numpy(), mask.numpy())
    assert got_mu.dtype == np.float32 and got_mu.shape == (7, 5, 4)
    np.testing.assert_allclose(got_mu, want_mu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_logvar, want_logvar.numpy(), rtol=1e-5, atol=1e-5)
    all_mu, all_logvar = forward.product_of_experts(ops.NUMPY, mu.numpy(), logvar.numpy())
    np.testing.assert_array_equal(all_mu, got_mu[-1:])  # no mask: every expert
    np.testing.assert_array_equal(all_logvar, got_logvar[-1:])


@pytest.mark.parametrize("output", sorted(forward.OUTPUTS))
def test_numpy_and_torch_turn_decoder_outputs_into_data_alike(output):
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1)) * 50  # sigmoid's tails overflow exp
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # a warning the app would print
        got = forward.OUTPUTS[output](ops.NUMPY, x.numpy())
    np.testing.assert_allclose(got, forward.OUTPUTS[output](torch, x).numpy(), rtol=1e-6, atol=1e-7)


def test_halves_splits_an_encoder_output_into_mean_and_log_variance():
    out = np.arange(12.0).reshape(2, 6)
    mu, logvar = forward.halves(out)
    assert mu.tolist() == [[0, 1, 2], [6, 7, 8]] and logvar.tolist() == [[3, 4, 5], [9, 10, 11]]
