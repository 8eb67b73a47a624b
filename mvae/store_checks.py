"""What `mvae.store` holds a checkpoint file's header and tensors to, before and after their bytes are read.

The header's entries against the file's size (every tensor's dtype, shape and span, the spans tiling the
data section exactly), against what the model it is read into needs (`Spec`), and the tensors' values:
a NaN or an infinity is refused, bfloat16 widened. Every failure is a CheckpointError naming the file,
made by `damaged` (not an MVAE checkpoint, or altered) or `misfit` (not this version's model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import CheckpointError
from .fields import MAX_STR_LEN

# The safetensors dtypes this loader reads, as numpy holds them; anything else is refused from the header.
# numpy has no bfloat16: its bits are read as uint16 and widened to float32 (exactly) once verified.
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
ST_DTYPES = {k: np.dtype(v) for k, v in ST_DTYPES.items()}
MAX_TENSORS = 10_000
MAX_DIMENSIONS = 8  # of one tensor's shape: a conv's weights have 4
RE_GET = "Re-download or retrain it."
# The bits of an infinite or NaN value: all of its exponent bits set.
_EXPONENT = {"F16": (np.uint16, 0x7C00), "BF16": (np.uint16, 0x7F80), "F32": (np.uint32, 0x7F800000),
             "F64": (np.uint64, 0x7FF0000000000000)}


class Spec:
    """What a file must hold, from the model it is read into: `tensors` maps each required name to
    (allowed safetensors dtypes, shape); `optional(name)` gives the same for names that may be absent."""

    def __init__(self, tensors: dict[str, tuple[frozenset, tuple]],
                 optional: Callable[[str], tuple[frozenset, tuple] | None] = lambda name: None):
        self.tensors, self.optional = tensors, optional


def damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"The checkpoint {path} is damaged or is not an MVAE checkpoint: {why}. {RE_GET}")


def misfit(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"The checkpoint {path} is damaged or does not fit this version of the model: {why}. "
                           f"{RE_GET}")


def header_entries(path: Path, header, data_size: int) -> tuple[dict, dict]:
    """The tensor entries and the raw metadata of a parsed header, with their layout checked."""
    if not isinstance(header, dict):
        raise damaged(path, "its header is not a JSON object")
    raw_meta = header.get("__metadata__")
    if not isinstance(raw_meta, dict) or not isinstance(raw_meta.get("mvae"), str):
        raise damaged(path, "its header carries no MVAE metadata")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        raise damaged(path, f"it lists {len(entries)} tensors; at most {MAX_TENSORS} are read")
    spans = sorted(_span(path, name, entry) for name, entry in entries.items())
    end = 0
    for begin, stop, name in spans:
        if begin != end:
            raise damaged(path, f"tensor {name!r} starts at byte {begin} of the data, not {end}")
        end = stop
    if end != data_size:
        raise damaged(path, f"its tensors take {end} bytes but the file holds {data_size} after the header "
                             "(truncated or padded)")
    return entries, raw_meta


def _span(path: Path, name: str, entry) -> tuple[int, int, str]:
    """(first byte, end byte, name) of one header entry within the data section, once its dtype, shape and
    offsets are checked against each other."""
    if len(name) > MAX_STR_LEN or not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise damaged(path, f"the header entry {name!r:.80} is malformed")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ST_DTYPES:
        raise damaged(path, f"tensor {name!r} has dtype {dtype!r:.20}; this loader reads only {sorted(ST_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS \
            or not all(type(d) is int and d >= 0 for d in shape):
        raise damaged(path, f"tensor {name!r} has the shape {shape!r:.80}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise damaged(path, f"tensor {name!r} has the data offsets {offsets!r:.80}")
    if offsets[1] - offsets[0] != math.prod(shape) * ST_DTYPES[dtype].itemsize:
        raise damaged(path, f"tensor {name!r} is {offsets[1] - offsets[0]} bytes, not the "
                             f"{math.prod(shape) * ST_DTYPES[dtype].itemsize} its {dtype} shape {shape} needs")
    return offsets[0], offsets[1], name


def check_spec(path: Path, entries: dict, spec: Spec) -> None:
    """Refuses entries that lack a tensor the spec requires, hold one it does not know, or store one in
    another dtype or shape."""
    missing = sorted(set(spec.tensors) - set(entries))
    if missing:
        raise misfit(path, f"it lacks the tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for name, entry in entries.items():
        want = spec.tensors.get(name) or spec.optional(name)
        if want is None:
            raise misfit(path, f"it holds a tensor {name!r:.80} that the model does not have")
        dtypes, shape = want
        if entry["dtype"] not in dtypes:
            raise misfit(path, f"tensor {name!r} is stored as {entry['dtype']}, where {' or '.join(sorted(dtypes))} "
                                "is expected")
        if tuple(entry["shape"]) != tuple(shape):
            raise misfit(path, f"tensor {name!r} has shape {entry['shape']}, where the model needs {list(shape)}")


def tensors_of(path: Path, entries: dict, data: bytearray) -> dict[str, np.ndarray]:
    """Each entry's tensor as a view of the verified `data`, which it keeps alive (the bytes are held once,
    not twice); bfloat16 widened to float32. A NaN or an infinity anywhere is refused."""
    tensors = {}
    for name, entry in entries.items():
        begin, end = entry["data_offsets"]
        dtype = ST_DTYPES[entry["dtype"]]
        tensor = np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=(end - begin) // dtype.itemsize,
                               offset=begin).reshape(entry["shape"])
        bad = _non_finite(tensor, entry["dtype"])
        if bad:
            raise CheckpointError(f"The checkpoint {path} is damaged: tensor {name!r} holds {bad} non-finite "
                                  f"value(s) (NaN or infinity), which no trained model has. {RE_GET}")
        tensors[name] = _widen_bfloat16(tensor) if entry["dtype"] == "BF16" else tensor
    return tensors


def _non_finite(tensor: np.ndarray, st_dtype: str) -> int:
    """How many values are NaN or infinite, counted on the bits (numpy has no bfloat16 to ask)."""
    if st_dtype not in _EXPONENT:
        return 0
    int_type, mask = _EXPONENT[st_dtype]
    bits = tensor.view(int_type) & int_type(mask)
    return int(np.count_nonzero(bits == mask))


def _widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32, so the widening is exact."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
