"""The MVAE's forward pass, written once: run by the torch model (training, with autograd) and by the lean
runtime (numpy, which must not import torch).

Everything here takes `xp`, the array library of its arguments: the `torch` module, or `ops.NUMPY` (numpy with
the three functions torch has and numpy lacks: sigmoid, softmax and logsumexp). Only calls the two spell alike
are used: `concatenate`, `stack`, `where`, `zeros_like`, `ones_like`, `broadcast_to` with `axis`, and
operators. Each side supplies its networks and normalisers through `ForwardPass`'s four hooks; the product
of experts, the split of an encoder's output, the full posterior, the decoders' inputs and the outputs are
this module's alone, so the two sides cannot drift apart (test_lean checks them against each other).
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ConfiguredLatent
from ..encoded import Encoded
from ..kinds import kind


def halves(out):
    """An encoder's output (B, 2 * size) split into its Gaussian expert's (mu, logvar), (B, size) each."""
    size = out.shape[-1] // 2
    return out[..., :size], out[..., size:]


def product_of_experts(xp, mu, logvar, present=None):
    """Fuse experts (E, B, D) and the N(0, I) prior into one Gaussian per row of `present` (S, E), a bool mask
    of the experts each subset takes (all of them when None): returns (S, B, D) twice.

    The product of Gaussians has precision sum_i 1/var_i and mean sum_i mu_i/var_i / sum_i 1/var_i. Both come
    from -logvar through logsumexp and softmax, so neither a tiny nor a huge variance overflows; the prior is
    prepended here and nowhere else, so it is counted exactly once.
    """
    prior = xp.zeros_like(mu[:1])
    means = xp.concatenate([prior, mu])[None]  # (1, E+1, B, D)
    precisions = xp.concatenate([prior, -logvar])[None]  # log precisions
    if present is not None:
        with_prior = xp.concatenate([xp.ones_like(present[:, :1]), present], axis=1)  # (S, E+1)
        precisions = xp.where(with_prior[:, :, None, None], precisions, float("-inf"))
    joint_mu = (xp.softmax(precisions, axis=1) * means).sum(axis=1)
    return joint_mu, -xp.logsumexp(precisions, axis=1)


def standardise(x, mean, std):
    """Data -> an encoder's input, by a normaliser's statistics."""
    return (x - mean) / std


def unstandardise(y, mean, std):
    """An encoder's input space -> data: `standardise` undone."""
    return y * std + mean


# What turns a decoder's output into data, by the name a kind gives (`Kind.output`).
OUTPUTS = {
    "sigmoid": lambda xp, x: xp.sigmoid(x),  # image logits -> pixel probabilities
    "identity": lambda xp, x: x,  # a log-mel in the encoder's (standardised) space
    "softmax": lambda xp, x: xp.softmax(x, axis=-1),  # label logits -> class probabilities
}


def to_output(xp, name: str, decoded):
    """A decoder's output -> the encoder's input space of the modality `name`."""
    return OUTPUTS[kind(name).output](xp, decoded)


def contrasted(xp, log_mel, factor: float, floor: float):
    """Log-mels (..., n_mels, frames) with each bin's deviation from its mean over time scaled by `factor` (the
    postfilter of `ModelConfig.log_mel_contrast`), and no lower than `floor`, the log of the front end's
    log_floor: the quietest a log-mel can be, and what any quieter bin is heard as."""
    if factor == 1.0:
        return log_mel
    mean = log_mel.mean(-1)[..., None]
    sharper = mean + factor * (log_mel - mean)
    return xp.where(sharper < floor, xp.zeros_like(sharper) + floor, sharper)


class ForwardPass(ConfiguredLatent):
    """The forward pass of the torch model and of the lean runtime alike. A subclass sets `cfg`, `names` (the
    input modalities, then the label) and `xp`, and runs its own networks and normalisers in the four hooks."""

    xp: Any
    names: tuple[str, ...]

    def _feed(self, name: str, x):
        """The modality's data -> its encoder's input (its normaliser)."""
        raise NotImplementedError

    def _expert(self, name: str, x):
        """The modality's encoder on its input -> (mu, logvar): the shared expert, then its own style."""
        raise NotImplementedError

    def _decoder(self, name: str, z):
        """The modality's decoder on its latent (the shared part, then its own style)."""
        raise NotImplementedError

    def _inverse(self, name: str, y):
        """The modality's encoder input space -> its data (its normaliser undone)."""
        raise NotImplementedError

    def encode(self, inputs: dict) -> Encoded:
        """Each given modality's encoder, run once on its normalised data (data in the model's space: speech as
        raw log-mel), its output split into the shared expert and its own style."""
        given = [n for n in self.names if n in inputs]
        if not given:
            raise ValueError("at least one modality must be given")
        fed = {n: self._feed(n, inputs[n]) for n in given}
        shared, mus, logvars, styles = self.cfg.latent_dim, [], [], {}
        for name in given:
            mu, logvar = self._expert(name, fed[name])
            mus.append(mu[:, :shared])
            logvars.append(logvar[:, :shared])
            if name in self.style_names:
                styles[name] = (mu[:, shared:], logvar[:, shared:])
        return Encoded(tuple(given), self.xp.stack(mus), self.xp.stack(logvars), styles, fed)

    def full_posterior(self, inputs: dict | Encoded):
        """Mean and log-variance of the full latent (B, F): the fused shared posterior of every given modality,
        each given modality's style posterior, and the prior N(0, I) for the style of each missing one."""
        xp = self.xp
        encoded = inputs if isinstance(inputs, Encoded) else self.encode(inputs)
        mu, logvar = product_of_experts(xp, encoded.mu, encoded.logvar)
        mus, logvars = [mu[0]], [logvar[0]]
        for name in self.style_names:
            prior = xp.broadcast_to(xp.zeros_like(mu[0, :, :1]), (mu.shape[1], self.cfg.style_dim))
            style_mu, style_logvar = encoded.styles.get(name, (prior, prior))
            mus.append(style_mu)
            logvars.append(style_logvar)
        return xp.concatenate(mus, axis=-1), xp.concatenate(logvars, axis=-1)

    def split(self, latents):
        """Full latents (N, F) -> the shared part (N, D) and {modality: its style (N, S)}."""
        layout = self.latent_layout()
        return latents[:, layout["shared"]], {n: latents[:, layout[n]] for n in self.style_names}

    def decode_parts(self, shared, styles: dict, names=None) -> dict:
        """Decoder outputs (likelihood parameters) from a shared latent (N, D) and each decoded modality's
        style (N, S)."""
        out = {}
        for name in names or self.names:
            z = self.xp.concatenate([shared, styles[name]], axis=-1) if name in self.style_names else shared
            out[name] = self._decoder(name, z)
        return out

    def decode(self, latents, names=None) -> dict:
        """Decoder outputs (likelihood parameters) for a batch of full latents (N, F)."""
        return self.decode_parts(*self.split(latents), names)

    def to_data(self, decoded: dict) -> dict:
        """Decoder outputs -> data: image probabilities, raw (de-standardised) log-mel, class probabilities."""
        data = {n: self._inverse(n, to_output(self.xp, n, v)) for n, v in decoded.items()}
        floor = math.log(self.cfg.audio.log_floor)
        return {n: contrasted(self.xp, x, self.cfg.log_mel_contrast, floor) if kind(n).vocoded else x
                for n, x in data.items()}

    def outputs(self, latents, names=None) -> dict:
        """Decoded data for a batch of full latents (N, F)."""
        return self.to_data(self.decode(latents, names))
