"""Private style latents beside the shared PoE latent: the objective, generation and the facade's layout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvae.config import AudioConfig, ModelConfig
from mvae.inference import Pipeline
from mvae.model.model import MVAE
from mvae.model.objectives import mvae_objective
from mvae.model.poe import kl_to_prior
from tests.helpers import tiny_model_and_batch

SHARED, STYLE = 4, 3


@pytest.fixture
def styled():
    model, batch = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED)
    return model.eval(), batch


def test_the_full_latent_is_the_shared_part_then_each_style(styled):
    model, _ = styled
    layout = model.latent_layout()
    assert list(layout) == ["shared", "farsi", "kannada", "speech"]
    assert layout["shared"] == slice(0, SHARED) and layout["speech"] == slice(SHARED + 2 * STYLE, SHARED + 3 * STYLE)
    assert model.full_latent_dim == SHARED + 3 * STYLE


def test_plain_model_has_no_styles():
    model = MVAE(ModelConfig(latent_dim=SHARED, hidden=16, audio=AudioConfig(n_mels=8, n_frames=8)))
    assert model.style_names == () and model.full_latent_dim == SHARED and list(model.latent_layout()) == ["shared"]


def test_objective_prices_each_style_only_where_its_modality_is_given(styled):
    """Without sampling, a missing modality's style is its prior's mean, zero."""
    model, batch = styled
    out = mvae_objective(model, batch, beta=1.0, sample=False)
    encoded = model.encode(batch)
    for i, subset in enumerate(out.subsets):
        mu, logvar = model.posterior({k: batch[k] for k in subset})
        kl = kl_to_prior(mu[0], logvar[0]).sum(-1)
        for name in ("farsi", "kannada", "speech"):
            if name in subset:
                kl = kl + kl_to_prior(*encoded.styles[name]).sum(-1)
        assert torch.allclose(out.kl[i], kl.mean(), rtol=1e-5), subset
        style = encoded.styles["farsi"][0] if "farsi" in subset else torch.zeros(len(mu[0]), STYLE)
        logits = model.decoders["farsi"](torch.cat([mu[0], style], -1))
        nll = F.binary_cross_entropy_with_logits(logits, batch["farsi"], reduction="none").sum((1, 2))
        assert torch.allclose(out.nll["farsi"][i], nll.mean(), rtol=1e-5), subset


def test_shared_kl_weight_prices_the_shared_latent_only(styled):
    model, batch = styled
    base = mvae_objective(model, batch, beta=1.0, sample=False)
    model.cfg.shared_kl_weight = 3.0
    heavier = mvae_objective(model, batch, beta=1.0, sample=False)
    mu, logvar = model.posterior(subset_list=model.training_subsets(), encoded=model.encode(batch))
    shared = kl_to_prior(mu, logvar).sum(-1).mean(1).sum()
    assert torch.allclose(heavier.loss - base.loss, 2.0 * shared, rtol=1e-4)
    assert torch.equal(heavier.kl, base.kl), "the reported KL stays the unweighted one"


def test_a_style_kl_weight_prices_that_modality_s_style_only_where_it_is_priced(styled):
    """speech=3 adds twice the speech style's KL of each subset that holds speech, and nothing else."""
    model, batch = styled
    # In float64 the difference of two losses near 2e4 keeps the digits this compares.
    model, batch = model.double(), {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    base = mvae_objective(model, batch, beta=0.5, sample=False)
    model.cfg.style_kl_weights = {**model.cfg.style_kl_weights, "speech": 3.0}
    heavier = mvae_objective(model, batch, beta=0.5, sample=False)
    speech_kl = kl_to_prior(*model.encode(batch).styles["speech"]).sum(-1).mean()
    holding = sum("speech" in s for s in heavier.subsets)
    assert 0 < holding < len(heavier.subsets)
    assert torch.allclose(heavier.loss - base.loss, 0.5 * 2.0 * holding * speech_kl, rtol=1e-4)
    assert torch.equal(heavier.kl, base.kl), "the reported KL stays the unweighted one"


def test_generation_keeps_a_given_style_and_draws_a_missing_one(styled):
    model, batch = styled
    given = {"farsi": batch["farsi"]}
    mean = model.generate(given, ["farsi", "kannada"], temperature=0.0)
    encoded = model.encode(given)
    shared = model.posterior(encoded=encoded)[0][0]
    own = torch.sigmoid(model.decoders["farsi"](torch.cat([shared, encoded.styles["farsi"][0]], -1)))
    prior_mean = torch.sigmoid(model.decoders["kannada"](torch.cat([shared, torch.zeros(5, STYLE)], -1)))
    assert torch.allclose(mean["farsi"], own, atol=1e-6) and torch.allclose(mean["kannada"], prior_mean, atol=1e-6)
    a = model.generate(given, ["kannada"], temperature=1.0, generator=torch.Generator().manual_seed(1))["kannada"]
    b = model.generate(given, ["kannada"], temperature=1.0, generator=torch.Generator().manual_seed(2))["kannada"]
    assert (a - b).abs().mean() > 1e-4, "temperature 1 draws a new style each time"


def test_restyle_keeps_the_digit_and_the_kept_styles(styled):
    model, _ = styled
    pipe = Pipeline(model)
    latent = np.arange(pipe.latent_dim, dtype=np.float32) / 10
    decoded = pipe.restyle(latent, keep=("farsi",), n=4, seed=0)
    layout = pipe.latent_layout
    for part in ("shared", "farsi"):
        assert np.array_equal(decoded.latents[:, layout[part]], np.repeat(latent[None, layout[part]], 4, 0))
    drawn = decoded.latents[:, layout["kannada"]]
    assert not np.allclose(drawn, latent[layout["kannada"]]) and len(np.unique(drawn[:, 0])) == 4
    effects = pipe.dimension_effects(latent, "kannada")
    assert effects.shape == (pipe.latent_dim,)
    # The decoder never reads another modality's style, so only float32 rounding may differ: a BLAS kernel can
    # sum a row differently by where it sits in the batch (about 1e-9 here, against effects of about 1e-2).
    own = effects[layout["kannada"]].max()
    assert own > 0
    assert np.all(effects[layout["farsi"]] <= 1e-6 * own) and np.all(effects[layout["speech"]] <= 1e-6 * own), \
        "another modality's style cannot change a Kannada digit"


def test_own_cross_style_decodes_every_subset_with_the_targets_own_style(styled):
    """cross_style="own" (DMVAE): a missing modality is reconstructed in its own inferred style, which is
    then priced in every subset."""
    model, batch = styled
    model.cfg.cross_style = "own"
    out = mvae_objective(model, batch, beta=1.0, sample=False)
    encoded = model.encode(batch)
    styles_kl = sum(kl_to_prior(*encoded.styles[n]).sum(-1) for n in ("farsi", "kannada", "speech"))
    for i, subset in enumerate(out.subsets):
        mu, logvar = model.posterior({k: batch[k] for k in subset})
        assert torch.allclose(out.kl[i], (kl_to_prior(mu[0], logvar[0]).sum(-1) + styles_kl).mean(), rtol=1e-5)
        logits = model.decoders["kannada"](torch.cat([mu[0], encoded.styles["kannada"][0]], -1))
        nll = F.binary_cross_entropy_with_logits(logits, batch["kannada"], reduction="none").sum((1, 2))
        assert torch.allclose(out.nll["kannada"][i], nll.mean(), rtol=1e-5), subset


def _trainable(**changes):
    torch.manual_seed(0)
    cfg = ModelConfig(latent_dim=SHARED, style_dim=STYLE, hidden=16, audio=AudioConfig(n_mels=8, n_frames=8),
                      cross_style="own", **changes)
    return MVAE(cfg)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {k: (p.grad.abs().sum().item() if p.grad is not None else 0.0) for k, p in model.named_parameters()}


def test_style_swap_trains_the_decoders_and_not_the_reading_encoder(styled):
    """The swap term's readers are frozen: their weights get no gradient from what they read and their batch
    norm statistics do not move, while the decoders learn from it."""
    from mvae.model.objectives import style_swap

    _, batch = styled
    model = _trainable(architecture="conv-mlp", conv_channels=4, image_conv_batchnorm=True, swap_weight=1.0)
    model.train()
    encoded = model.encode(batch)
    mu, logvar = model.posterior(subset_list=model.training_subsets(), encoded=encoded)
    # Detached inputs: any gradient an encoder gets can only come through its reading of the drawn digits.
    mu, own = mu.detach(), {n: m.detach() for n, (m, _) in encoded.styles.items()}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    loss = style_swap(model, mu, own, batch["label"], torch.Generator().manual_seed(0))
    assert loss.item() > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items()), "reader's statistics moved"
    grads = _grads(model, loss)
    assert grads["decoders.farsi.0.weight"] > 0 and grads["decoders.speech.0.weight"] > 0
    readers = [k for k in grads if k.startswith("encoders.")]
    assert readers and all(grads[k] == 0.0 for k in readers), "a reading encoder learnt from its reading"
    assert model.training, "the reader is put back in training mode"


def test_image_decoder_family_can_differ_from_the_architecture():
    model = MVAE(ModelConfig(architecture="conv-mlp", image_decoder="conv", conv_channels=4, hidden=16,
                             latent_dim=SHARED, audio=AudioConfig(n_mels=8, n_frames=8)))
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoders["farsi"].modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoders["speech"].modules())
    with pytest.raises(ValueError, match="image_decoder"):
        ModelConfig(image_decoder="deconv").validate()
    with pytest.raises(ValueError, match="cross_style"):
        ModelConfig(cross_style="mine").validate()
