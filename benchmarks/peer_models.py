"""The contenders of the peer benchmark (benchmarks/peers.py), each behind one adapter.

MultiVae's MMVAE+, MoPoE-VAE, MVAE and MVTCAE are built on the project's own encoder and decoder networks
(those of the shipped recipe, wrapped as MultiVae's BaseEncoder/BaseDecoder), with the project's likelihoods
(Bernoulli digits, Laplace log-mel in per-bin standard deviations) and its per-modality likelihood balance,
so that the objective is what differs. The project's plain PoE and its shipped recipe are the others.

An adapter looks like the project's MVAE to the evaluator: `input_names`, `eval()` and
`generate(inputs, targets, temperature, generator)` in the model's data space (digits in [0, 1], speech as
raw log-mel); `latent(name, items)` gives the mean latent of one modality alone, for the linear probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from mvae.config import LABEL, ModelConfig, TrainConfig, model_config_from_dict
from mvae.model.model import MVAE

PROJECT, PEER = "project", "peer"
# Temperatures a MultiVae model can decode at: a posterior sample (1) or the posterior means (0).
PEER_TEMPERATURES = (0.0, 1.0)


@dataclass(frozen=True)
class Contender:
    name: str
    family: str  # PROJECT or PEER
    source: str  # where its hyperparameters come from, as the README says it
    model: dict = field(default_factory=dict)  # over the shipped recipe's model section (networks, latents)
    peer: str = ""  # the MultiVae class
    settings: dict = field(default_factory=dict)  # the MultiVae config's own fields


# Every peer has the shipped recipe's networks and its latent size: 16 shared dimensions, plus 16 private ones
# per modality where the method has them (a single-latent method gets the 32 each decoder sees in the recipe).
SHARED, PRIVATE = 16, 16
CONTENDERS = (
    Contender("shipped recipe", PROJECT, "mvae.config.SHIPPED_RECIPE (train.py's defaults)"),
    Contender("plain PoE", PROJECT, "the shipped networks with --style-dim 0 (checkpoints/plain-poe's flags)",
              {"style_dim": 0, "latent_dim": 64, "cross_style": "prior", "swap_weight": 0.0, "image_decoder": ""}),
    Contender("MMVAE+", PEER, "Palumbo et al. 2023 and MultiVae's defaults: K=10 DReG, Laplace posteriors with "
              "softmax scales, learnt private priors, beta 2.5 (PolyMNIST)", peer="MMVAEPlus",
              settings={"K": 10, "loss": "dreg_looser", "prior_and_posterior_dist": "laplace_with_softmax",
                        "learn_modality_prior": True, "beta": 2.5, "modalities_specific_dim": PRIVATE,
                        "latent_dim": SHARED, "reconstruction_option": "joint_prior"}),
    Contender("MoPoE-VAE", PEER, "Sutter et al. 2021 and MultiVae's defaults: every subset, beta 2.5 (PolyMNIST)",
              peer="MoPoE", settings={"beta": 2.5, "latent_dim": SHARED + PRIVATE}),
    Contender("MVAE (MultiVae)", PEER, "Wu & Goodman 2018 and MultiVae's defaults: joint plus unimodal ELBOs "
              "(subsampling), beta annealed from 0 over 10 epochs", peer="MVAE",
              settings={"use_subsampling": True, "k": 0, "warmup": 10, "beta": 1.0, "latent_dim": SHARED + PRIVATE}),
    Contender("MVTCAE", PEER, "Hwang et al. 2021 and MultiVae's defaults (from the paper's code): alpha 0.1, "
              "beta 2.5", peer="MVTCAE", settings={"alpha": 0.1, "beta": 2.5, "latent_dim": SHARED + PRIVATE}),
)
NAMES = tuple(c.name for c in CONTENDERS)


def contender(name: str) -> Contender:
    for c in CONTENDERS:
        if c.name == name:
            return c
    raise ValueError(f"no contender named {name!r}; choose from {', '.join(NAMES)}")


def recipe_model_config(changes: dict) -> ModelConfig:
    from mvae.config import SHIPPED_RECIPE

    return model_config_from_dict({**SHIPPED_RECIPE["model"], **changes})


def holder_config(c: Contender) -> ModelConfig:
    """The project model whose networks, normalisers and likelihood balance a contender uses."""
    if c.family == PROJECT:
        return recipe_model_config(c.model)
    latent = c.settings["latent_dim"]
    style = c.settings.get("modalities_specific_dim", 0)
    return recipe_model_config({"latent_dim": latent, "style_dim": style})


class ProjectAdapter:
    """The project's own model, trained by its own trainer's step (the recipe's augmentation, beta warm-up,
    learning-rate schedule and gradient clip)."""

    family = PROJECT
    head = True  # it has a label head, so its label accuracy needs no probe

    def __init__(self, model: MVAE):
        self.model = model
        self.input_names = model.input_names
        self.cfg = model.cfg

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def generate(self, inputs, targets, temperature=0.0, generator=None):
        return self.model.generate(inputs, targets, temperature, generator)

    @torch.no_grad()
    def latent(self, name: str, items: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        mu, _ = self.model.posterior({name: items})
        return mu[0]

    @torch.no_grad()
    def classify(self, name: str, items: torch.Tensor) -> torch.Tensor:
        return self.model.classify(self.latent(name, items)).argmax(-1)


def project_trainer(c: Contender, train_cfg: TrainConfig, data, out_dir):
    from mvae.training.loop import Trainer

    trainer = Trainer(holder_config(c), train_cfg, data, out_dir, device="cpu", progress=False)
    return trainer, ProjectAdapter(trainer.model)


# -- MultiVae's side: imported only here, so that the project's own code never needs it --------------------
def _multivae():
    try:
        import multivae.models as models
        from multivae.data.datasets.base import DatasetOutput
        from multivae.models.nn import BaseMultilatentEncoder
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError as exc:
        raise ImportError(f"MultiVae is not installed ({exc}); pip install -r requirements-bench.txt") from exc
    return models, DatasetOutput, ModelOutput, BaseEncoder, BaseMultilatentEncoder, BaseDecoder


def wrapped_networks(holder: MVAE, private: int):
    """The holder's encoders and decoders as MultiVae's BaseEncoder/BaseDecoder: an encoder gives the shared
    part of its expert as `embedding` and, where the method has private latents, the rest as
    `style_embedding`; a decoder gives the likelihood's parameters as `reconstruction`."""
    _, _, ModelOutput, BaseEncoder, BaseMultilatentEncoder, BaseDecoder = _multivae()
    shared = holder.cfg.latent_dim

    class Encoder(BaseMultilatentEncoder if private else BaseEncoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net, self.latent_dim, self.style_dim = net, shared, private

        def forward(self, x):
            mu, logvar = self.net(x)
            if not private:
                return ModelOutput(embedding=mu, log_covariance=logvar)
            return ModelOutput(embedding=mu[:, :shared], log_covariance=logvar[:, :shared],
                               style_embedding=mu[:, shared:], style_log_covariance=logvar[:, shared:])

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, z):
            flat = z.reshape(-1, z.shape[-1])  # IWAE draws come as (K, B, D)
            out = self.net(flat)
            return ModelOutput(reconstruction=out.reshape(*z.shape[:-1], *out.shape[1:]))

    names = holder.input_names
    return ({n: Encoder(holder.encoders[n]) for n in names}, {n: Decoder(holder.decoders[n]) for n in names})


def peer_model(c: Contender, holder: MVAE):
    """The MultiVae model of a contender on the holder's networks, likelihoods and likelihood balance."""
    models, *_ = _multivae()
    # Digits are grey levels in [0, 1], scored by the Bernoulli log-likelihood as the project scores them
    # (binary cross-entropy with logits); torch's Bernoulli refuses targets that are not 0 or 1 unless its
    # argument checks are off.
    torch.distributions.Distribution.set_default_validate_args(False)
    names = holder.input_names
    modalities = holder.modalities
    likelihood = {n: "bernoulli" if modalities[n].kind.output == "sigmoid" else "laplace" for n in names}
    settings = dict(c.settings)
    config = getattr(models, f"{c.peer}Config")(
        n_modalities=len(names), input_dims={n: tuple(modalities[n].shape) for n in names},
        uses_likelihood_rescaling=True, rescale_factors={n: modalities[n].weight for n in names},
        decoders_dist=likelihood,
        decoder_dist_params={n: {"scale": holder.cfg.speech_scale} for n in names if likelihood[n] == "laplace"},
        **settings)
    encoders, decoders = wrapped_networks(holder, settings.get("modalities_specific_dim") or 0)
    return getattr(models, c.peer)(config, encoders=encoders, decoders=decoders)


class PeerAdapter:
    """A MultiVae model seen through the project's data space: inputs are normalised as the project's
    encoders take them, and decoder outputs go back through the project's output transforms."""

    family = PEER
    head = False

    def __init__(self, c: Contender, holder: MVAE, model):
        self.contender, self.holder, self.model = c, holder, model
        self.input_names = holder.input_names
        self.cfg = holder.cfg
        self.batch_type = _multivae()[1]

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def loss(self, batch: dict, epoch: int, batch_ratio: float) -> torch.Tensor:
        """The method's own training loss on a batch in the model's data space (`epoch` counts from 1, as
        MultiVae's trainer passes it, for MVAE's annealing)."""
        self.model.train()
        fed = self.holder.normalise({n: batch[n] for n in self.input_names})
        return self.model(self.batch_type(data=fed), epoch=epoch, batch_ratio=batch_ratio).loss

    @torch.no_grad()
    def generate(self, inputs, targets, temperature=0.0, generator=None):
        """MultiVae draws from torch's and numpy's global generators (the caller seeds them); `generator` is
        accepted for the evaluator's sake and unused."""
        if temperature not in PEER_TEMPERATURES:
            raise ValueError(f"a MultiVae model decodes at temperature 1 (a posterior sample) or 0 (the means), "
                             f"not {temperature}")
        self.model.eval()
        given = [n for n in self.input_names if n in inputs]
        if not given or LABEL in inputs:
            raise ValueError(f"a MultiVae model is conditioned on some of {self.input_names}, not on "
                             f"{sorted(inputs)}")
        fed = self.holder.normalise({n: inputs[n] for n in given})
        embedding = self.model.encode(self.batch_type(data=self.filled(fed)), cond_mod=given,
                                      return_mean=temperature == 0)
        decoded = self.model.decode(embedding, modalities=list(targets))
        return self.holder.to_data({t: decoded[t] for t in targets})

    @torch.no_grad()
    def latent(self, name: str, items: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        fed = self.holder.normalise({name: items})
        return self.model.encode(self.batch_type(data=self.filled(fed)), cond_mod=[name], return_mean=True).z

    def filled(self, fed: dict) -> dict:
        """The given modalities and zeros for the others: MoPoE's encode runs every encoder before it picks
        the posterior of the conditioning subset (MultiVae's convention for a missing modality is zeros); the
        zeros never reach the subset's posterior."""
        n = len(next(iter(fed.values())))
        like = next(iter(fed.values()))
        return {m: fed[m] if m in fed else like.new_zeros(n, *self.holder.modalities[m].shape)
                for m in self.input_names}


def build_peer(c: Contender, banks: dict, seed: int) -> PeerAdapter:
    """A contender's MultiVae model, its normalisers fitted on the training banks as train.py fits them."""
    torch.manual_seed(seed)
    holder = MVAE(holder_config(c))
    for name, bank in banks.items():
        holder.norm(name).fit(bank.items)
    return PeerAdapter(c, holder, peer_model(c, holder))


def stretched(cfg: TrainConfig, steps: int, steps_per_epoch: int) -> TrainConfig:
    """The recipe's settings with its epochs set to what a wall-clock budget holds, so that the cosine
    schedule and the beta warm-up run their course within the budget's steps."""
    epochs = max(1, math.ceil(steps / steps_per_epoch))
    return replace(cfg, epochs=epochs)
