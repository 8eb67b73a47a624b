"""Checkpoints of the torch model: writing one (with the lean runtime's program beside the weights),
building the model from one, the training state, and upgrading old files. The file format itself, and
reading it, are in `mvae.store`, which needs numpy alone.

    python -m mvae.upgrade checkpoints/default   # verify, and rewrite an old checkpoint in the current format
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch.overrides import TorchFunctionMode

from . import registry
from .config import to_dict
from .errors import CheckpointError
from .model.export import check_program, program
from .model.model import MVAE
from .store import (
    MAX_PARAMETERS,
    MODEL_FILE,
    MODEL_JSON,
    STATE_FILE,
    VERSION,
    atomic_write,
    atomic_write_json,
    canonical,
    model_config,
    model_path,
    seal,
    unpack,
)
from .store_checks import RE_GET, Spec, damaged, misfit

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ST_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}


def pack(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    return seal(lambda t, m: st_save(t, metadata=m), {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                meta)


# -- models -------------------------------------------------------------------------------------------------


def check_bounds(cfg, path="the model") -> dict:
    """The figures (multiply-adds, the largest step's memory) of the program the model `cfg` describes has,
    or the CheckpointError `mvae.load` would refuse it with: train.py can refuse a run up front."""
    from .runtime.model import size_program

    return size_program(Path(path), cfg, program(shape_model(cfg)))


def _record(model: MVAE, info: dict, dtype: str, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a model file: the weights in `dtype`, the config, the lean runtime's
    program (within the loader's bounds, and checked to reproduce the model), and `info`."""
    from .runtime.model import size_program

    tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    runtime = program(model)
    size_program(path, model.cfg, runtime)  # never write a file that mvae.load refuses
    check_program(model, runtime, tensors)  # the lean runtime reproduces this model, or nothing is written
    return tensors, {"model_config": to_dict(model.cfg), "dtype": dtype, "runtime": runtime, "info": info}


def save_model(folder, model: MVAE, info: dict, dtype: str = "float32") -> Path:
    """Write model.safetensors and model.json into `folder`; `info` holds metrics, history, provenance."""
    folder = Path(folder)
    tensors, meta = _record(model, info, dtype, folder / MODEL_FILE)
    atomic_write(folder / MODEL_FILE, pack(tensors, meta))
    atomic_write_json(folder / MODEL_JSON, meta)
    return folder / MODEL_FILE


_INITS = {f for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")
          and callable(f := getattr(torch.nn.init, n))} | {torch.Tensor.normal_, torch.Tensor.uniform_}


class _NoInit(TorchFunctionMode):
    """Skips random initialisation: on the meta device, normal_ alone imports torch's compiler (1.7 s, 150 MB)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _INITS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def shape_model(cfg) -> MVAE:
    """The model `cfg` describes, with its parameters on the meta device: shapes and dtypes, no memory."""
    with torch.device("meta"), _NoInit():
        return MVAE(cfg)


def _model_spec(path: Path, meta: dict, found: dict) -> Spec:
    if not isinstance(meta.get("dtype", "float32"), str) or meta.get("dtype", "float32") not in DTYPES:
        raise misfit(path, f"its weights' dtype is {meta.get('dtype')!r:.40}; use one of {sorted(DTYPES)}")
    if not isinstance(meta.get("info", {}), dict):
        raise damaged(path, "its info metadata is not an object")
    cfg = model_config(path, meta.get("model_config"))
    shapes = shape_model(cfg).state_dict()
    n = sum(t.numel() for t in shapes.values())
    if n > MAX_PARAMETERS:
        raise misfit(path, f"its config describes {n:,} parameters; at most {MAX_PARAMETERS:,} are loaded")
    found["cfg"] = cfg
    stored = ST_NAMES[DTYPES[meta.get("dtype", "float32")]]

    def spec(t):
        return frozenset([stored] if t.is_floating_point() else [ST_NAMES[t.dtype]]), tuple(t.shape)

    # Checkpoints written before each modality owned its normaliser hold the log-mel statistics whether or
    # not the model has speech; they are accepted, and dropped on loading.
    every = shapes if set(cfg.modalities) == set(registry.names()) else \
        shape_model(replace(cfg, modalities=registry.names())).state_dict()
    stale = {k: spec(t) for k, t in every.items() if k.partition(".")[0].endswith("_norm") and k not in shapes}
    return Spec({k: spec(t) for k, t in shapes.items()}, stale.get)


def read_metadata(path) -> dict:
    return unpack(model_path(path), lambda meta: _model_spec(model_path(path), meta, {}))[1]


def load_model(path, device="cpu") -> tuple[MVAE, dict]:
    file = model_path(path)
    found: dict = {}
    tensors, meta = unpack(file, lambda meta: _model_spec(file, meta, found))
    try:
        model = MVAE(found["cfg"])
        wanted = model.state_dict()
        model.load_state_dict({k: torch.from_numpy(v).float() if v.dtype.kind == "f" else torch.from_numpy(v)
                               for k, v in tensors.items() if k in wanted})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"The checkpoint {file} does not fit this version of the model: {exc}") from exc
    return model.to(device).eval(), meta


# -- training state -----------------------------------------------------------------------------------------


def save_training_state(folder, model: MVAE, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                        state: dict) -> Path:
    """Everything needed to continue training exactly where it stopped."""
    opt = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors["generator"] = generator.get_state()
    scalars = {}
    for idx, param_state in opt["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    meta = dict(state, model_config=to_dict(model.cfg), param_groups=opt["param_groups"], optim_scalars=scalars)
    path = Path(folder) / STATE_FILE
    atomic_write(path, pack(tensors, meta))
    return path


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same_kind(saved, current) -> bool:
    """Whether a saved optimizer setting has the type of the optimizer's own (JSON turns tuples into lists)."""
    if current is None or isinstance(current, bool):
        return saved is None or type(saved) is type(current)
    if isinstance(current, (int, float)):
        return _is_number(saved)
    if isinstance(current, (tuple, list)):
        return isinstance(saved, list) and len(saved) == len(current) \
            and all(_same_kind(s, c) for s, c in zip(saved, current))
    return type(saved) is type(current)


def _state_spec(path: Path, meta: dict, model: MVAE, optimizer, generator) -> Spec:
    """The training state must come from this model and optimizer, with settings a resumed run can use."""
    said = meta.get("model_config")
    if canonical(said) != canonical(json.loads(json.dumps(to_dict(model.cfg)))):
        raise CheckpointError(f"The training state {path} was made with other model settings; resume with the "
                              "flags of that run, or train into a new --out folder.")

    def wrong(key: str, what: str) -> CheckpointError:
        return damaged(path, f"its {key} is {meta.get(key)!r:.60}, not {what}")

    for key in ("epoch", "batch"):
        if type(meta.get(key)) is not int or not 0 <= meta[key] <= 10**9:
            raise wrong(key, "a whole number of at least 0")
    history = meta.get("history")
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and _is_number(h.get("seconds")) and isinstance(h.get("train", {}), dict)
            and isinstance(h.get("test", {}), dict) for h in history):
        raise wrong("history", "a list of the epochs' records")
    partial = meta.get("partial", {})
    if not isinstance(partial, dict) or not all(_is_number(v) for v in partial.values()):
        raise wrong("partial", "a mapping of running totals")
    if not _is_number(meta.get("wall_seconds", 0.0)) or meta.get("wall_seconds", 0.0) < 0:
        raise wrong("wall_seconds", "a number of seconds")
    if not isinstance(meta.get("train_config", {}), dict):
        raise wrong("train_config", "an object")

    current = optimizer.state_dict()["param_groups"]
    groups = meta.get("param_groups")
    # A setting the saved group lacks keeps the optimizer's default when loaded; one it adds must be known.
    if not isinstance(groups, list) or len(groups) != len(current) or not all(
            isinstance(g, dict) and set(g) <= set(c) and g.get("params") == c["params"]
            and all(_same_kind(g[k], c[k]) for k in g if k != "params") for g, c in zip(groups, current)):
        raise wrong("param_groups", f"the settings of this {type(optimizer).__name__} optimizer")
    params = {i: p for g, group in zip(optimizer.param_groups, current) for i, p in zip(group["params"], g["params"])}
    scalars = meta.get("optim_scalars")
    if not isinstance(scalars, dict) or not all(
            k.partition(".")[0].isdigit() and int(k.partition(".")[0]) in params and k.partition(".")[2]
            and (_is_number(v) or isinstance(v, bool)) for k, v in scalars.items()):
        raise wrong("optim_scalars", "a mapping of the optimizer's numbers by parameter")

    model_tensors = model.state_dict()
    required = {f"model.{k}": (frozenset([ST_NAMES[t.dtype]]), tuple(t.shape)) for k, t in model_tensors.items()}
    required["generator"] = (frozenset(["U8"]), tuple(generator.get_state().shape))

    def optional(name: str):
        kind, _, rest = name.partition(".")
        idx, _, key = rest.partition(".")
        if kind != "optim" or not idx.isdigit() or int(idx) not in params or not key:
            return None
        param = params[int(idx)]
        # Adam's step is a 0-d tensor; its moments have the parameter's shape.
        return frozenset([ST_NAMES[param.dtype]]), (() if key == "step" else tuple(param.shape))

    return Spec(required, optional)


def load_training_state(folder, model: MVAE, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
    path = Path(folder) / STATE_FILE
    tensors, meta = unpack(path, lambda meta: _state_spec(path, meta, model, optimizer, generator))
    try:
        tensors = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        generator.set_state(tensors["generator"].clone())
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value.clone()
        for key, value in meta["optim_scalars"].items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        current = optimizer.state_dict()["param_groups"]
        groups = [{k: tuple(v) if isinstance(current[i].get(k), tuple) else v for k, v in g.items()}
                  for i, g in enumerate(meta["param_groups"])]  # JSON has lists where Adam keeps tuples (betas)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"The training state {path} does not fit this model and optimizer ({exc}); resume "
                              "with the flags of that run, or train into a new --out folder.") from exc
    return meta



# -- upgrading ----------------------------------------------------------------------------------------------


@dataclass
class Verified:
    """What `verify` checked of a file (`what`), and what it could not (`unverified`, "" when nothing)."""

    file: Path
    meta: dict
    what: str
    unverified: str = ""


def verify(path) -> Verified:
    """Every check a file of its kind gets, the lean runtime's and torch's; a CheckpointError when one fails.

    A model file: the checksum, the config's ranges, the program's structure and bounds (as `mvae.load`
    checks them), the weights against the model the config describes, and the program against that model
    (it must reproduce it). Format 1's checksum covered the tensors alone, so a format-1 file's metadata
    cannot be verified: whatever the weights do not fix (the audio settings, the objective's weights, the
    training record) could have been edited without a trace."""
    from .runtime.model import LeanMVAE

    file = model_path(path)
    tensors, meta = unpack(file)
    old = meta["version"] < VERSION
    if "model_config" not in meta:  # another file of this format, such as the judges: its own loader checks it
        if old:
            return Verified(file, meta, "tensors verified against format 1's checksum", "its metadata")
        return Verified(file, meta, "checksum verified (not a model: its own loader checks the rest)")
    runtime = meta.get("runtime")
    if runtime is not None:
        LeanMVAE.load(file)
    model, _ = load_model(file)
    if runtime is not None:
        try:
            check_program(model, runtime, {k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise damaged(file, f"its lean runtime program does not reproduce the model its config and weights "
                                f"make ({exc})") from None
    what = ("config within its ranges, weights fit the model it describes"
            + (", program within its bounds and reproduces that model" if runtime is not None else ""))
    if old:
        return Verified(file, meta, f"tensors verified against format 1's checksum, {what}",
                        "the settings the weights do not fix (audio, the objective's weights) and the training record")
    return Verified(file, meta, f"verified: checksum, {what}")


def upgrade(path, trust_metadata: bool = False) -> Path:
    """Rewrite a verified checkpoint file in the current format; a model's file also gets the lean runtime's
    program, rebuilt from the torch model and checked to reproduce it (and its JSON copy, when there is one,
    the same metadata). The weights stay the same. A format-1 file, whose metadata cannot be verified, is
    resealed only with `trust_metadata`; otherwise it is refused, so that an edit is never sealed in."""
    checked = verify(path)
    file, meta = checked.file, checked.meta
    if meta["version"] == VERSION and ("runtime" in meta or "model_config" not in meta):
        return file
    if checked.unverified and not trust_metadata:
        raise CheckpointError(f"{file} is in format {meta['version']}, whose checksum did not cover the metadata: "
                              f"{checked.unverified} cannot be verified, so it is not resealed. If you know where the "
                              f"file came from, run `python -m mvae.upgrade --trust-metadata {file}`; otherwise "
                              f"{RE_GET[0].lower()}{RE_GET[1:]}")
    if "model_config" not in meta:
        tensors, _ = unpack(file)
        atomic_write(file, pack({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, meta))
        return file
    model, meta = load_model(file)
    tensors, new_meta = _record(model, meta.get("info", {}), meta.get("dtype", "float32"), file)
    atomic_write(file, pack(tensors, new_meta))
    if file.with_suffix(".json").is_file():
        atomic_write_json(file.with_suffix(".json"), new_meta)
    return file
