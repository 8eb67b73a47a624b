"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint folder holds `model.safetensors` (weights, with the config and metadata in its header) and
`model.json` (the same metadata, for people to read; when present, the loader refuses one whose config or
dtype disagrees with the header, so that an edit there is never mistaken for a change of the model). A
training run also keeps `train_state.safetensors` (optimizer, random state, position) so that it can resume
exactly. Nothing is ever unpickled.

Reading checks, in this order, so that a hostile file costs little: the header's length and layout
against the file's size; the metadata's types; the config's ranges and, from a model built on the meta
device (no memory), the dtype and shape of every tensor. Only then are the tensor bytes read, once, and
checked against the digest (format 2: it covers the header's dtypes, shapes and offsets, the metadata,
and every byte of the tensors) and for non-finite values. Every failure is a CheckpointError naming the file.

    python -m mvae.upgrade checkpoints/default   # verify, and rewrite a format-1 checkpoint as format 2
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch.overrides import TorchFunctionMode

from .config import INPUT_MODALITIES, MAX_STR_LEN, model_config_from_dict, to_dict
from .errors import CheckpointError
from .model.model import MVAE

FORMAT = "mvae-checkpoint"
# 1: the digest covered tensor names and bytes only. 2: it also covers the header and the metadata.
VERSION = 2
OLDEST_VERSION = 1  # format-1 files are still verified by their own rule; `--upgrade` rewrites them
MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
STATE_FILE = "train_state.safetensors"
EVAL_JSON, EVAL_MD = "eval.json", "eval.md"  # the evaluator's report, beside the model it scores
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The safetensors names of the dtypes this loader reads; anything else is refused from the header.
ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
MAX_HEADER_BYTES = 16 * 2**20  # the shipped model's header, with its whole training history, is 80 kB
MAX_DATA_BYTES = 2**30  # tensors of a file read without a model to check them against (the judges)
MAX_PARAMETERS = 50_000_000  # 200 MB in float32; the shipped model has 3.8 million
MAX_TENSORS = 10_000
RE_GET = "Re-download or retrain it."

if sys.byteorder != "little":  # safetensors stores little-endian bytes, and tensors are viewed in place
    raise ImportError("mvae.checkpoint needs a little-endian machine")


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


# -- the digest ---------------------------------------------------------------------------------------------


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(entries: dict, meta: dict, data) -> str:
    """Format 2: the tensor entries of the header (dtype, shape, data_offsets), the metadata without its
    own `sha256`, then the data section, in that order."""
    h = hashlib.sha256(f"{FORMAT}/2\n".encode())
    h.update(_canonical(entries) + b"\n")
    h.update(_canonical({k: v for k, v in meta.items() if k != "sha256"}) + b"\n")
    h.update(data)
    return h.hexdigest()


def _digest_v1(entries: dict, data) -> str:
    """Format 1: tensor names and bytes, by name."""
    h = hashlib.sha256()
    view = memoryview(data)
    for key in sorted(entries):
        begin, end = entries[key]["data_offsets"]
        h.update(key.encode())
        h.update(view[begin:end])
    return h.hexdigest()


def _split(blob: bytes) -> tuple[dict, int]:
    """The header of safetensors bytes that this module wrote, and where their data section starts."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), 8 + n


def pack(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k != "sha256"}
    # The digest is taken over the metadata as a reader parses it (tuples become lists, keys texts).
    meta = json.loads(json.dumps(dict(meta, format=FORMAT, version=VERSION)))
    draft = st_save(tensors, metadata={"mvae": json.dumps(meta)})
    header, start = _split(draft)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    meta["sha256"] = digest(entries, meta, memoryview(draft)[start:])
    blob = st_save(tensors, metadata={"mvae": json.dumps(meta)})
    final, _ = _split(blob)
    if {k: v for k, v in final.items() if k != "__metadata__"} != entries:  # offsets never depend on metadata
        raise RuntimeError("safetensors laid the tensors out differently on the second pass")
    return blob


# -- reading ------------------------------------------------------------------------------------------------


class Spec:
    """What a file must hold, from the model it is read into: `tensors` maps each required name to
    (allowed safetensors dtypes, shape); `optional(name)` gives the same for names that may be absent."""

    def __init__(self, tensors: dict[str, tuple[frozenset, tuple]],
                 optional: Callable[[str], tuple[frozenset, tuple] | None] = lambda name: None):
        self.tensors, self.optional = tensors, optional


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"The checkpoint {path} is damaged or is not an MVAE checkpoint: {why}. {RE_GET}")


def _misfit(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"The checkpoint {path} is damaged or does not fit this version of the model: {why}. "
                           f"{RE_GET}")


def _open(path: Path):
    try:
        if not path.exists():
            raise CheckpointError(f"No checkpoint at {path}. Train one with `python train.py`, or pass the path of "
                                  f"a checkpoint folder or {MODEL_FILE} file.")
        if path.is_dir():
            raise CheckpointError(f"The checkpoint {path} is a folder, not a file; pass the checkpoint folder that "
                                  f"holds {MODEL_FILE}, or the file itself.")
        return open(path, "rb")
    except OSError as exc:
        raise CheckpointError(f"The checkpoint {path} could not be read ({exc.strerror or exc}); check that the "
                              "file exists and that this user may read it.") from exc


def _read_exact(f, path: Path, n: int, what: str) -> bytearray:
    buf = bytearray(n)
    try:
        got = f.readinto(buf)
    except OSError as exc:
        raise CheckpointError(f"The checkpoint {path} could not be read ({exc.strerror or exc}).") from exc
    if got != n:
        raise _damaged(path, f"its {what} ends early ({got} of {n} bytes); it changed while being read or is truncated")
    return buf


def _entries(path: Path, header, data_size: int) -> tuple[dict, dict]:
    """The tensor entries and the raw metadata of a parsed header, with their layout checked."""
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    raw_meta = header.get("__metadata__")
    if not isinstance(raw_meta, dict) or not isinstance(raw_meta.get("mvae"), str):
        raise _damaged(path, "its header carries no MVAE metadata")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        raise _damaged(path, f"it lists {len(entries)} tensors; at most {MAX_TENSORS} are read")
    spans = []
    for name, entry in entries.items():
        if len(name) > MAX_STR_LEN or not isinstance(entry, dict) \
                or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _damaged(path, f"the header entry {name!r:.80} is malformed")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in ST_DTYPES:
            raise _damaged(path, f"tensor {name!r} has dtype {dtype!r:.20}; this loader reads only {sorted(ST_DTYPES)}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(type(d) is int and d >= 0 for d in shape):
            raise _damaged(path, f"tensor {name!r} has the shape {shape!r:.80}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise _damaged(path, f"tensor {name!r} has the data offsets {offsets!r:.80}")
        if offsets[1] - offsets[0] != math.prod(shape) * ST_DTYPES[dtype].itemsize:
            raise _damaged(path, f"tensor {name!r} is {offsets[1] - offsets[0]} bytes, not the "
                                 f"{math.prod(shape) * ST_DTYPES[dtype].itemsize} its {dtype} shape {shape} needs")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise _damaged(path, f"tensor {name!r} starts at byte {begin} of the data, not {end}")
        end = stop
    if end != data_size:
        raise _damaged(path, f"its tensors take {end} bytes but the file holds {data_size} after the header "
                             "(truncated or padded)")
    return entries, raw_meta


def _parse_meta(path: Path, raw: str) -> dict:
    try:
        meta = json.loads(raw)
    except ValueError:
        raise _damaged(path, "its metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise _damaged(path, f"its metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise _damaged(path, f"its header does not say {FORMAT!r}")
    version = meta.get("version")
    if type(version) is not int:
        raise _damaged(path, f"its format version is {version!r:.40}, not a whole number")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {version}); update mvae.")
    if version < OLDEST_VERSION:
        raise _damaged(path, f"its format version {version} is older than this loader reads ({OLDEST_VERSION})")
    if not isinstance(meta.get("sha256"), str):
        raise _damaged(path, "its metadata has no checksum")
    return meta


def _check_spec(path: Path, entries: dict, spec: Spec) -> None:
    missing = sorted(set(spec.tensors) - set(entries))
    if missing:
        raise _misfit(path, f"it lacks the tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for name, entry in entries.items():
        want = spec.tensors.get(name) or spec.optional(name)
        if want is None:
            raise _misfit(path, f"it holds a tensor {name!r:.80} that the model does not have")
        dtypes, shape = want
        if entry["dtype"] not in dtypes:
            raise _misfit(path, f"tensor {name!r} is stored as {entry['dtype']}, where {' or '.join(sorted(dtypes))} "
                                "is expected")
        if tuple(entry["shape"]) != tuple(shape):
            raise _misfit(path, f"tensor {name!r} has shape {entry['shape']}, where the model needs {list(shape)}")


def unpack(path: Path, spec: Callable[[dict], Spec | None] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify one safetensors file; every failure is a CheckpointError naming the file.

    `spec(meta)` is called once the metadata is parsed and before any tensor byte is read; it may refuse
    the metadata with a CheckpointError, and it returns what the tensors must be (None: any known dtype,
    within MAX_DATA_BYTES)."""
    path = Path(path)
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise _damaged(path, f"it is only {size} bytes long")
        (header_size,) = struct.unpack("<Q", _read_exact(f, path, 8, "header length"))
        if header_size > min(MAX_HEADER_BYTES, size - 8):
            raise _damaged(path, f"its header claims {header_size} bytes, more than the file's {size} bytes or the "
                                 f"{MAX_HEADER_BYTES} a header may take")
        try:
            header = json.loads(_read_exact(f, path, header_size, "header"))
        except ValueError:
            raise _damaged(path, "its header is not valid JSON") from None
        data_size = size - 8 - header_size
        entries, raw_meta = _entries(path, header, data_size)
        meta = _parse_meta(path, raw_meta["mvae"])
        wanted = spec(meta) if spec else None
        if wanted is not None:
            _check_spec(path, entries, wanted)
        elif data_size > MAX_DATA_BYTES:
            raise _damaged(path, f"its tensors take {data_size} bytes, more than the {MAX_DATA_BYTES} read here")
        data = _read_exact(f, path, data_size, "data")
    if meta["version"] >= 2:
        ok = set(raw_meta) == {"mvae"} and meta["sha256"] == digest(entries, meta, data)
    else:
        ok = meta["sha256"] == _digest_v1(entries, data)
    if not ok:
        raise _damaged(path, "its header, metadata or weights do not match their checksum (a flipped or lost "
                             "byte, or an edit)")
    tensors = {}
    for name, entry in entries.items():
        begin, end = entry["data_offsets"]
        dtype = ST_DTYPES[entry["dtype"]]
        # A view of `data`, which it keeps alive: the bytes are held once, not twice.
        tensor = torch.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin) \
            if end > begin else torch.empty(0, dtype=dtype)
        tensor = tensor.reshape(entry["shape"])
        bad = _non_finite(tensor)
        if bad:
            raise CheckpointError(f"The checkpoint {path} is damaged: tensor {name!r} holds {bad} non-finite "
                                  f"value(s) (NaN or infinity), which no trained model has. {RE_GET}")
        tensors[name] = tensor
    _check_json_copy(path, meta)
    return tensors, meta


def _non_finite(tensor: torch.Tensor) -> int:
    """How many values are NaN or infinite: those whose exponent bits are all set. Counted on the bits
    with numpy, which is several times quicker here than torch.isfinite on many small half-precision tensors."""
    if tensor.dtype not in _EXPONENT:
        return 0
    int_type, mask = _EXPONENT[tensor.dtype]
    bits = tensor.view(int_type).numpy() & mask
    return int(np.count_nonzero(bits == mask))


_EXPONENT = {torch.float16: (torch.int16, 0x7C00), torch.bfloat16: (torch.int16, 0x7F80),
             torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}


def _check_json_copy(path: Path, meta: dict) -> None:
    """The JSON copy of the metadata beside the file (model.json), when there is one, must say the same,
    except in `info`, the training record (metrics, history): it decides nothing, and a run killed between
    the two writes of a save leaves that copy one save behind."""
    copy = path.with_suffix(".json")
    try:
        if not copy.is_file():
            return
        if copy.stat().st_size > MAX_HEADER_BYTES:
            raise CheckpointError(f"{copy} is larger than any metadata ({copy.stat().st_size} bytes). Delete it, or "
                                  "re-download the checkpoint folder.")
        text = copy.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{copy}, the readable copy of {path.name}'s metadata, could not be read ({exc}). "
                              "Delete it, or re-download the checkpoint folder.") from exc
    try:
        said = json.loads(text)
    except ValueError:
        said = None
    ours = {k: v for k, v in meta.items() if k not in ("format", "version", "sha256", "info")}
    if isinstance(said, dict):
        said = {k: v for k, v in said.items() if k != "info"}
    if not isinstance(said, dict) or _canonical(said) != _canonical(ours):
        keys = sorted(k for k in set(ours) | set(said if isinstance(said, dict) else {})
                      if not isinstance(said, dict) or _canonical(said.get(k)) != _canonical(ours.get(k)))
        raise CheckpointError(f"{copy} does not match the metadata inside {path} (it differs in {keys[:5]}); it "
                              f"is only a readable copy, so it was edited or belongs to another checkpoint. "
                              f"Restore it (re-download the checkpoint folder) or delete it.")


# -- models -------------------------------------------------------------------------------------------------


def model_path(path) -> Path:
    path = Path(path)
    try:
        folder = path.is_dir()
    except OSError:  # unreadable: unpack says so, naming the path
        return path
    return path / MODEL_FILE if folder or path.suffix != ".safetensors" else path


def save_model(folder, model: MVAE, info: dict, dtype: str = "float32") -> Path:
    """Write model.safetensors and model.json into `folder`; `info` holds metrics, history, provenance."""
    folder = Path(folder)
    tensors = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = {"model_config": to_dict(model.cfg), "dtype": dtype, "info": info}
    atomic_write(folder / MODEL_FILE, pack(tensors, meta))
    atomic_write_json(folder / MODEL_JSON, meta)
    return folder / MODEL_FILE


def _config(path: Path, data):
    try:
        return model_config_from_dict(data)
    except ValueError as exc:
        raise _misfit(path, f"its model_config is refused ({exc})") from None


_INITS = {f for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")
          and callable(f := getattr(torch.nn.init, n))} | {torch.Tensor.normal_, torch.Tensor.uniform_}


class _NoInit(TorchFunctionMode):
    """Skips random initialisation: on the meta device, normal_ alone imports torch's compiler (1.7 s, 150 MB)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _INITS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def _shape_model(cfg) -> MVAE:
    """The model `cfg` describes, with its parameters on the meta device: shapes and dtypes, no memory."""
    with torch.device("meta"), _NoInit():
        return MVAE(cfg)


def _model_spec(path: Path, meta: dict, found: dict) -> Spec:
    if meta.get("dtype", "float32") not in DTYPES:
        raise _misfit(path, f"its weights' dtype is {meta.get('dtype')!r:.40}; use one of {sorted(DTYPES)}")
    if not isinstance(meta.get("info", {}), dict):
        raise _damaged(path, "its info metadata is not an object")
    cfg = _config(path, meta.get("model_config"))
    shapes = _shape_model(cfg).state_dict()
    n = sum(t.numel() for t in shapes.values())
    if n > MAX_PARAMETERS:
        raise _misfit(path, f"its config describes {n:,} parameters; at most {MAX_PARAMETERS:,} are loaded")
    found["cfg"] = cfg
    stored = ST_NAMES[DTYPES[meta.get("dtype", "float32")]]

    def spec(t):
        return frozenset([stored] if t.is_floating_point() else [ST_NAMES[t.dtype]]), tuple(t.shape)

    # Checkpoints written before each modality owned its normaliser hold the log-mel statistics whether or
    # not the model has speech; they are accepted, and dropped on loading.
    every = shapes if set(cfg.modalities) == set(INPUT_MODALITIES) else \
        _shape_model(replace(cfg, modalities=INPUT_MODALITIES)).state_dict()
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
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()
                               if k in wanted})
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
    if _canonical(said) != _canonical(json.loads(json.dumps(to_dict(model.cfg)))):
        raise CheckpointError(f"The training state {path} was made with other model settings; resume with the "
                              "flags of that run, or train into a new --out folder.")

    def wrong(key: str, what: str) -> CheckpointError:
        return _damaged(path, f"its {key} is {meta.get(key)!r:.60}, not {what}")

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


def upgrade(path) -> Path:
    """Rewrite a verified checkpoint file in the current format; the tensors' bytes stay the same."""
    file = model_path(path)
    tensors, meta = unpack(file)
    if meta["version"] == VERSION:
        return file
    atomic_write(file, pack({k: v.clone() for k, v in tensors.items()}, meta))
    return file
