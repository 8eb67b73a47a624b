"""The multimodal VAE's forward pass in numpy: what the app and `mvae.load()` run, with no torch.

It runs the program a checkpoint carries (`runtime` in its metadata, written by `mvae.model.export` with
the weights): each modality's encoder, each decoder and the label head, as `mvae.runtime.ops` steps. The
product of experts and the rest of the forward pass are `mvae.runtime.forward`'s, which the torch model runs
too. The arithmetic matches the torch model's to float32 rounding; `save_model` checks that before it writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import api_checks
from ..config import LABEL, ModelConfig
from ..errors import CheckpointError
from ..kinds import kind
from ..store import FLOAT_NAMES, MAX_PARAMETERS, model_config, model_path, unpack
from ..store_checks import Spec, damaged, misfit
from . import ops
from .forward import ForwardPass, halves, standardise, unstandardise

PROGRAM_VERSION = 1
MAX_STEPS = 100  # of one network; the recipe's longest has 17

# What a checkpoint's program may make the runtime do, worked out from its shapes before any tensor is read.
# No call runs a network on more rows at once than MAX_BATCH: generate's n, a traversal's dimensions x values
# and dimension_effects' chunks are all capped at MAX_SAMPLES.
MAX_BATCH = api_checks.MAX_SAMPLES
BYTES_PER_NUMBER = 4  # float32
# The budgets are for one pass of every network over MAX_BATCH rows, more than any one call runs. Figures
# from `size_program` (multiply-adds; the most one step holds):
#   the shipped model (checkpoints/default)                            3.17 G    114 MB
#   the recipe with the sweep's widest choices (hidden 384, latent 96)  3.79 G    114 MB
#   the plain `conv` architecture at its default 32 channels          14.8 G     228 MB
# The budgets are about 4 times the largest the recipe and the study make (5 and 4.5 times the shipped
# model's). The shipped model runs its 3.17 G in about 0.6 s on one busy CPU core, so a program at the
# budget stays within the error contract's 5 s; a step at the activation budget, with the weights
# (MAX_PARAMETERS), within its 1.5 GB.
MAX_MULTIPLY_ADDS = 16 * 10**9  # all networks together
MAX_ACTIVATION_BYTES = 512 * 2**20  # the most one step holds at once: its input, its scratch, its output


class LeanMVAE(ForwardPass):
    """A trained MVAE as numpy arrays and the program that runs them; the forward pass is `ForwardPass`'s."""

    xp = ops.NUMPY

    def __init__(self, cfg: ModelConfig, runtime: dict, tensors: dict[str, np.ndarray]):
        self.cfg = cfg
        self.names = (*cfg.modalities, LABEL)  # the input modalities, then the label
        arrays = {k: np.ascontiguousarray(v, np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()}

        def bind(steps):  # each tensor looked up once, here, rather than on every call
            return [dict(s, tensors={role: arrays[ref["name"]] for role, ref in s.get("tensors", {}).items()})
                    for s in steps]

        self.encoders = {n: bind(steps) for n, steps in runtime["encoders"].items()}
        self.decoders = {n: bind(steps) for n, steps in runtime["decoders"].items()}
        # Each normaliser as (mean, std); a modality without one takes its data as it is.
        self.norms = {n: (arrays[norm["mean"]["name"]], arrays[norm["std"]["name"]])
                      for n, norm in runtime["norms"].items()}

    # -- the hooks of the forward pass ---------------------------------------------------------------------
    def _feed(self, name: str, x) -> np.ndarray:
        x = np.asarray(x)  # a label is a class index: only floating data becomes float32
        x = x.astype(np.float32, copy=False) if x.dtype.kind == "f" else x
        return standardise(x, *self.norms[name]) if name in self.norms else x

    def _expert(self, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return halves(ops.run(self.encoders[name], x))

    def _decoder(self, name: str, z: np.ndarray) -> np.ndarray:
        return ops.run(self.decoders[name], z)

    def _inverse(self, name: str, y: np.ndarray) -> np.ndarray:
        return (unstandardise(y, *self.norms[name]) if name in self.norms else y).astype(np.float32, copy=False)

    def outputs(self, latents, names=None) -> dict[str, np.ndarray]:
        """Decoded data for a batch of full latents (N, F): image probabilities, raw log-mel, class probabilities."""
        return super().outputs(np.asarray(latents, np.float32), names)

    # -- building one ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> tuple[LeanMVAE, dict]:
        """The model in a checkpoint folder or model.safetensors file, and its metadata."""
        file = model_path(path)
        found: dict = {}
        tensors, meta = unpack(file, lambda meta: _spec(file, meta, found))
        _check_values(file, meta["runtime"], tensors)
        model = cls(found["cfg"], meta["runtime"], tensors)
        model.check_shapes(file)
        return model, meta

    def check_shapes(self, path) -> None:
        """Runs every network once on a zero item: each must take and give what the config says. `size_program`
        has said so from the shapes already, and bounded what this costs (a MAX_BATCH-th of the budgets); this
        holds its rules to what numpy does."""
        cfg = self.cfg
        try:
            for name in self.names:
                shape = kind(name).shape(cfg)
                item = np.zeros((1, *shape), np.int64 if not shape else np.float32)
                size = cfg.latent_dim + (cfg.style_dim if name in self.style_names else 0)
                got = ops.run(self.encoders[name], item).shape
                if got != (1, 2 * size):
                    raise ValueError(f"the {name} encoder gives {got[1:]} numbers, not {2 * size}")
                got = ops.run(self.decoders[name], np.zeros((1, size), np.float32)).shape
                want = (1, *shape) if shape else (1, cfg.n_classes)
                if got != want:
                    raise ValueError(f"the {name} decoder gives shape {got[1:]}, not {want[1:]}")
                if name in self.norms:
                    self._inverse(name, np.zeros((1, *shape), np.float32))
        except (ValueError, IndexError, KeyError, TypeError, MemoryError) as exc:
            raise misfit(Path(path), f"its networks do not fit its config ({exc})") from None


def _refs(runtime: dict):
    """Every tensor reference in a program: ({"name": ..., "shape": [...]}, where it is used)."""
    for part in ("encoders", "decoders"):
        for name, steps in runtime[part].items():
            for step in steps:
                for ref in step.get("tensors", {}).values():
                    yield ref, f"{part}.{name}"
    for name, norm in runtime["norms"].items():
        for ref in norm.values():
            yield ref, f"norms.{name}"


def _check_program(path: Path, runtime, names) -> None:
    """The program's structure, before any tensor is read: only known operations, settings and names."""
    def bad(why: str):
        return damaged(path, f"its lean runtime program {why}")

    if not isinstance(runtime, dict) or runtime.get("version") != PROGRAM_VERSION \
            or set(runtime) != {"version", "encoders", "decoders", "norms"}:
        raise bad(f"is not of version {PROGRAM_VERSION} with encoders, decoders and norms")
    for part in ("encoders", "decoders"):
        if not isinstance(runtime[part], dict) or set(runtime[part]) != set(names):
            raise bad(f"does not give {part} for exactly {list(names)}")
        for name, steps in runtime[part].items():
            if not isinstance(steps, list) or len(steps) > MAX_STEPS:
                raise bad(f"has no list of at most {MAX_STEPS} steps for the {name} {part[:-1]}")
            for step in steps:
                op = step.get("op") if isinstance(step, dict) else None
                if not isinstance(op, str) or op not in ops.OPS \
                        or set(step) - {"op", "tensors", *ops.SETTINGS.get(op, ())} \
                        or not set(ops.SETTINGS.get(op, ())) <= set(step) \
                        or not isinstance(step.get("tensors", {}), dict) \
                        or not set(step.get("tensors", {})) <= set(ops.OPS[op]):
                    raise bad(f"has a step it cannot run in the {name} {part[:-1]}: {step!r:.80}")
                for key in ops.SETTINGS.get(op, ()):
                    value = step[key]
                    ok = (isinstance(value, list) and len(value) <= 4 and all(type(v) is int and 0 < v <= 4096
                                                                              for v in value)) if key == "shape" \
                        else (isinstance(value, float) and 0 < value < 1) if key == "eps" \
                        else (type(value) is int and 0 <= value <= 16)
                    if not ok:
                        raise bad(f"sets {key} to {value!r:.40} in the {name} {part[:-1]}")
    if not isinstance(runtime["norms"], dict) or not set(runtime["norms"]) <= set(names) or not all(
            isinstance(n, dict) and set(n) == {"mean", "std"} for n in runtime["norms"].values()):
        raise bad("has malformed normalisers")
    for ref, where in _refs(runtime):
        if not (isinstance(ref, dict) and set(ref) == {"name", "shape"} and isinstance(ref["name"], str)
                and isinstance(ref["shape"], list) and len(ref["shape"]) <= 4
                and all(type(d) is int and 0 < d <= 10**7 for d in ref["shape"])):
            raise bad(f"names a tensor badly in {where}: {ref!r:.80}")


def _spec(path: Path, meta: dict, found: dict) -> Spec:
    """What the file must hold, from its config and program, checked before any tensor byte is read."""
    if "runtime" not in meta:
        raise CheckpointError(f"The checkpoint {path} was written before the lean runtime and carries no program "
                              "for it. Convert it once with the training requirements installed: "
                              f"`python -m mvae.upgrade {path}`.")
    dtype = meta.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in FLOAT_NAMES:
        raise misfit(path, f"its weights' dtype is {dtype!r:.40}; use one of {sorted(FLOAT_NAMES)}")
    cfg = model_config(path, meta.get("model_config"))
    runtime = meta["runtime"]
    _check_program(path, runtime, (*cfg.modalities, LABEL))
    wanted: dict = {}
    for ref, _ in _refs(runtime):
        shape = tuple(ref["shape"])
        if wanted.setdefault(ref["name"], shape) != shape:
            raise damaged(path, f"its program gives tensor {ref['name']!r:.80} two shapes")
    total = sum(math.prod(s) for s in wanted.values())
    if total > MAX_PARAMETERS:
        raise misfit(path, f"its program reads {total:,} numbers; at most {MAX_PARAMETERS:,} are loaded")
    found["figures"] = size_program(path, cfg, runtime)
    found["cfg"] = cfg
    stored = frozenset([FLOAT_NAMES[dtype]])

    def optional(name: str):
        # Batch norm's step count, which the forward pass does not read.
        return (frozenset(["I64"]), ()) if name.endswith(".num_batches_tracked") else None

    return Spec({n: (stored, s) for n, s in wanted.items()}, optional)


def _broadcasts(shape: tuple, item: tuple) -> bool:
    """Whether an array of `shape` combines with a batch of items of shape `item`, leaving it as it is."""
    if len(shape) > len(item) + 1 or (len(shape) == len(item) + 1 and shape[0] != 1):
        return False
    return all(d in (1, i) for d, i in zip(reversed(shape), reversed(item)))


def size_program(path: Path, cfg: ModelConfig, runtime: dict) -> dict:
    """Every network of a checked program, run symbolically over MAX_BATCH rows: each step must fit what
    reaches it, each network must take and give what `cfg` says, and together they must keep within
    MAX_ACTIVATION_BYTES and MAX_MULTIPLY_ADDS. Returns the figures; a CheckpointError says which step of
    which network fails. Reads shapes only, so it costs microseconds whatever the program claims."""
    names = (*cfg.modalities, LABEL)
    style = set(cfg.style_names)
    macs, peak, where = 0, 0, ""
    for part in ("encoders", "decoders"):
        for name in names:
            latent = cfg.latent_dim + (cfg.style_dim if name in style else 0)
            shape = kind(name).shape(cfg)
            if part == "encoders":
                size, want = ops.Size(shape, integer=not shape), ops.Size((2 * latent,))
                norm = runtime["norms"].get(name)
                if norm is not None and (size.integer or not all(
                        _broadcasts(tuple(ref["shape"]), shape) for ref in norm.values())):
                    raise misfit(path, f"its {name} normaliser does not fit the {name} data, of shape {list(shape)}")
            else:
                size, want = ops.Size((latent,)), ops.Size(shape or (cfg.n_classes,))
            for i, step in enumerate(runtime[part][name]):
                shapes = {role: ref["shape"] for role, ref in step.get("tensors", {}).items()}
                try:
                    size, cost = ops.infer(step, shapes, size, MAX_BATCH, cfg.n_classes)
                except ops.ShapeError as exc:
                    raise misfit(path, f"step {i} of its {name} {part[:-1]} cannot run ({exc})") from None
                macs += cost.macs
                if cost.elements * BYTES_PER_NUMBER > peak:
                    peak, where = cost.elements * BYTES_PER_NUMBER, f"step {i} ({step['op']}) of its {name} {part[:-1]}"
                if peak > MAX_ACTIVATION_BYTES:
                    raise misfit(path, f"{where} would hold {peak / 2**20:,.0f} MB at once for a batch of {MAX_BATCH}; "
                                       f"the budget is {MAX_ACTIVATION_BYTES / 2**20:,.0f} MB")
            if size != want:
                raise misfit(path, f"its {name} {part[:-1]} gives {'class indices of ' if size.integer else ''}shape "
                                   f"{list(size.item)}, where its config needs {list(want.item)}")
    if macs > MAX_MULTIPLY_ADDS:
        raise misfit(path, f"its networks take {macs:,} multiply-adds for a batch of {MAX_BATCH}; the budget is "
                           f"{MAX_MULTIPLY_ADDS:,}")
    return {"multiply_adds": macs, "activation_bytes": peak, "largest_step": where}


def _check_values(path: Path, runtime: dict, tensors: dict) -> None:
    """What no trained model holds and the arithmetic cannot take: a negative batch-norm variance (a NaN
    from its square root) or a normaliser's standard deviation of zero or less."""
    for part in ("encoders", "decoders"):
        for name, steps in runtime[part].items():
            for step in steps:
                if step["op"] == "batchnorm" and (tensors[step["tensors"]["var"]["name"]] < 0).any():
                    raise damaged(path, f"a batch norm of its {name} {part[:-1]} has a negative variance")
    for name, norm in runtime["norms"].items():
        if not (tensors[norm["std"]["name"]] > 0).all():
            raise damaged(path, f"its {name} normaliser has a standard deviation that is not positive")
