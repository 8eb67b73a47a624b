"""The torch model as a program for the lean runtime (`mvae.runtime`): the steps of each network, naming
the tensors each reads. `save_model` writes it into every checkpoint and checks it reproduces the model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..kinds import kind
from ..runtime.model import LeanMVAE
from . import nets
from .modalities import Identity, Standardise
from .model import MVAE

# How far the lean outputs may stray from the torch model's, relative to the output's scale where that
# exceeds 1 (a log-mel of 12, an expert's mean of 100 for an input unlike any digit): float32 rounding.
TOLERANCE = 1e-4


def stray(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference of `got` from `want`, in units of max(1, the largest |want|)."""
    return float(np.abs(got - want).max(initial=0.0)) / max(1.0, float(np.abs(want).max(initial=0.0)))


def _ref(module: nn.Module, prefix: str, attr: str, name: str) -> dict:
    return {name: {"name": f"{prefix}.{attr}", "shape": list(getattr(module, attr).shape)}}


def _params(module: nn.Module, prefix: str) -> dict:
    refs = _ref(module, prefix, "weight", "weight")
    return refs | (_ref(module, prefix, "bias", "bias") if module.bias is not None else {})


def _square(value, what: str) -> int:
    value = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(set(value)) != 1:
        raise TypeError(f"the lean runtime needs a square {what}, not {value}")
    return int(value[0])


def steps(module: nn.Module, prefix: str) -> list[dict]:
    """The lean steps of one network; a layer the runtime cannot run is refused, naming it."""
    if isinstance(module, nets.Encoder):
        return steps(module.body, f"{prefix}.body") + steps(module.head, f"{prefix}.head")
    if isinstance(module, nn.Sequential):
        return [s for i, child in enumerate(module) for s in steps(child, f"{prefix}.{i}")]
    if isinstance(module, nn.Linear):
        return [{"op": "linear", "tensors": _params(module, prefix)}]
    if isinstance(module, nn.SiLU):
        return [{"op": "silu"}]
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.ConvTranspose1d)):
        if module.groups != 1 or _square(module.dilation, "dilation") != 1 or \
                any(getattr(module, "output_padding", (0, 0))) or module.padding_mode != "zeros":
            raise TypeError(f"{prefix}: the lean runtime runs plain convolutions only")
        op = {nn.Conv2d: "conv2d", nn.ConvTranspose2d: "conv_transpose2d", nn.ConvTranspose1d: "conv_transpose1d"}[
            type(module)]
        return [{"op": op, "tensors": _params(module, prefix), "stride": _square(module.stride, "stride"),
                 "padding": _square(module.padding, "padding")}]
    if isinstance(module, nn.BatchNorm2d):
        if not module.track_running_stats or not module.affine:
            raise TypeError(f"{prefix}: the lean runtime needs batch norm with running statistics and affine")
        tensors = _ref(module, prefix, "running_mean", "mean") | _ref(module, prefix, "running_var", "var") \
            | _params(module, prefix)
        return [{"op": "batchnorm", "tensors": tensors, "eps": float(module.eps)}]
    if isinstance(module, nn.Embedding):
        return [{"op": "embedding", "tensors": _ref(module, prefix, "weight", "weight")}]
    if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (1, -1):
        return [{"op": "flatten"}]
    if isinstance(module, nn.Unflatten) and module.dim == 1:
        return [{"op": "unflatten", "shape": list(module.unflattened_size)}]
    if isinstance(module, nets.AddChannel):
        return [{"op": "add_channel"}]
    if isinstance(module, nets.DropChannel):
        return [{"op": "drop_channel"}]
    if isinstance(module, nn.Identity):
        return []
    raise TypeError(f"{prefix}: the lean runtime has no step for {type(module).__name__}; add one to "
                    "mvae/runtime/ops.py and here")


def _norm(module: nn.Module, prefix: str) -> dict | None:
    if isinstance(module, Standardise):
        return _ref(module, prefix, "mean", "mean") | _ref(module, prefix, "std", "std")
    if isinstance(module, Identity):
        return None
    raise TypeError(f"{prefix}: the lean runtime has no normaliser like {type(module).__name__}")


def program(model: MVAE) -> dict:
    norms = {n: _norm(model.norm(n), f"{n}_norm") for n in model.names}
    return {"version": 1,
            "encoders": {n: steps(model.encoders[n], f"encoders.{n}") for n in model.names},
            "decoders": {n: steps(model.decoders[n], f"decoders.{n}") for n in model.names},
            "norms": {n: norm for n, norm in norms.items() if norm is not None}}


def lean_twin(model: MVAE) -> LeanMVAE:
    """The lean runtime's copy of a torch MVAE in memory, its program and weights as a checkpoint would carry them."""
    tensors = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
               for k, v in model.state_dict().items()}
    return LeanMVAE(model.cfg, program(model), tensors)


def check_program(model: MVAE, runtime: dict, tensors: dict[str, torch.Tensor], n: int = 4) -> None:
    """Raises unless the lean runtime, given `runtime` and the weights as they will be stored, reproduces
    the torch model on random items of every modality and random latents, to TOLERANCE."""
    twin = MVAE(model.cfg).eval()
    stored = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k in twin.state_dict()}
    twin.load_state_dict(stored)
    lean = LeanMVAE(model.cfg, runtime, {k: v.cpu().numpy() for k, v in stored.items()})
    generator = torch.Generator().manual_seed(0)
    batch = {}
    for name in twin.names:
        shape = kind(name).shape(model.cfg)
        batch[name] = torch.randint(model.cfg.n_classes, (n,), generator=generator) if not shape else \
            twin.norm(name).inverse(torch.randn(n, *shape, generator=generator))
    latents = torch.randn(n, twin.full_latent_dim, generator=generator)
    with torch.no_grad():
        want = [*twin.full_posterior(batch), *twin.outputs(latents).values()]
    got = [*lean.full_posterior({k: v.numpy() for k, v in batch.items()}), *lean.outputs(latents.numpy()).values()]
    worst = max(stray(g, w.numpy()) for g, w in zip(got, want))
    if not worst <= TOLERANCE:
        raise RuntimeError(f"the lean runtime strays {worst:.2g} from the torch model (allowed {TOLERANCE})")
