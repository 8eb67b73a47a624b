"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint folder holds `model.safetensors` (weights, with the config and metadata in its header) and
`model.json` (the same metadata, for people and the app). A training run also keeps
`train_state.safetensors` (optimizer, random state, position) so that it can resume exactly.
Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import model_config_from_dict, to_dict
from .errors import CheckpointError
from .model import MVAE

FORMAT = "mvae-checkpoint"
VERSION = 1
MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
STATE_FILE = "train_state.safetensors"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users, e.g. a container's
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def pack(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = dict(meta, format=FORMAT, version=VERSION, sha256=_digest(tensors))
    return st_save(tensors, metadata={"mvae": json.dumps(meta)})


def unpack(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify one safetensors file; every failure is a CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train one with `python train.py`, or pass the path of a "
                              f"checkpoint folder or {MODEL_FILE} file.")
    data = path.read_bytes()
    damaged = f"The checkpoint {path} is damaged or is not an MVAE checkpoint"
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header["__metadata__"]["mvae"])
        tensors = st_load(data)
    except Exception as exc:  # any parse failure means the same thing to the user
        raise CheckpointError(f"{damaged} ({type(exc).__name__}). Re-download or retrain it.") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{damaged}: its header does not say {FORMAT!r}.")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {meta['version']}); update mvae.")
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{damaged}: its weights do not match their checksum (a flipped or lost byte). "
                              "Re-download or retrain it.")
    return tensors, meta


def model_path(path) -> Path:
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() or path.suffix != ".safetensors" else path


def save_model(folder, model: MVAE, info: dict, dtype: str = "float32") -> Path:
    """Write model.safetensors and model.json into `folder`; `info` holds metrics, history, provenance."""
    folder = Path(folder)
    tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = {"model_config": to_dict(model.cfg), "dtype": dtype, "info": info}
    atomic_write(folder / MODEL_FILE, pack(tensors, meta))
    atomic_write_json(folder / MODEL_JSON, meta)
    return folder / MODEL_FILE


def read_metadata(path) -> dict:
    return unpack(model_path(path))[1]


def load_model(path, device="cpu") -> tuple[MVAE, dict]:
    file = model_path(path)
    tensors, meta = unpack(file)
    try:
        model = MVAE(model_config_from_dict(meta["model_config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"The checkpoint {file} does not fit this version of the model: {exc}") from exc
    return model.to(device).eval(), meta


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


def load_training_state(folder, model: MVAE, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
    path = Path(folder) / STATE_FILE
    tensors, meta = unpack(path)
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as exc:
        raise CheckpointError(f"The training state {path} was made with other model settings; resume with the "
                              "flags of that run, or train into a new --out folder.") from exc
    generator.set_state(tensors["generator"])
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["optim_scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
