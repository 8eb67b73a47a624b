"""Checks on the arguments of the public API, each giving the clean value or an InputError that says what to pass.

The bounds keep every call small: a caller cannot ask for more decoding, and so more memory and time,
than a screenful of results needs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence, Set

import numpy as np

from . import registry
from .errors import InputError

MAX_SAMPLES = 256  # generate's n, and the size of any batch of latents decoded at once
MAX_TEMPERATURE = 10.0
MAX_SEED = 2**128 - 1  # as much entropy as numpy's SeedSequence draws itself
MAX_TRAVERSE_VALUES = 64
MIN_INTERPOLATE_STEPS, MAX_INTERPOLATE_STEPS = 2, 64
# Latents live near the prior N(0, I); a coordinate of 1000 standard deviations means nothing, and
# far larger ones can overflow the decoders to infinity.
MAX_LATENT_ABS = 1000.0
MAX_NESTING = 3  # lists in lists: a batch of latents is two deep; deeper is a mistake (or a recursion bomb)
MAX_KEPT_NAMES = 64  # restyle's keep: a few modality names, duplicates allowed


def _real(value) -> bool:
    """A real number: not a bool (True is no count), and not a numpy time span, which numpy files under
    its integers."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_, np.timedelta64))


def _float(value: numbers.Real) -> float:
    """A real number as a float; one past float's range (an int or a Fraction of 10**400) is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def shown(value, most: int = 80) -> str:
    """A value as a message may quote it: cut short, and never an error itself (Python refuses to print an
    int of over 4,300 digits, and a caller's object may have a broken repr)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any repr may fail; the message must still be given
        return f"a {type(value).__name__}"
    return text if len(text) <= most else text[:most - 3] + "..."


def whole_number(value, what: str, low: int, high: int, high_text: str | None = None) -> int:
    """An integer in [low, high]; a float that is a whole number counts (a slider may give 4.0)."""
    wanted = f"{what} must be a whole number from {low} to {high_text or high}"
    if not _real(value):
        raise InputError(f"{wanted}, not {shown(value)} ({type(value).__name__}).")
    if not isinstance(value, numbers.Integral) and not (math.isfinite(_float(value)) and _float(value).is_integer()):
        raise InputError(f"{wanted}, not {shown(value)}.")
    value = int(value)
    if not low <= value <= high:
        raise InputError(f"{wanted}, not {shown(value)}.")
    return value


def real_number(value, what: str, low: float, high: float) -> float:
    if not _real(value):
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, not {shown(value)} "
                         f"({type(value).__name__}).")
    value = _float(value)
    if not low <= value <= high:  # also refuses NaN
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, not {value}.")
    return value


def label(value, n_classes: int) -> int:
    return whole_number(value, "The digit label", 0, n_classes - 1)


def seed(value) -> int | None:
    return None if value is None else whole_number(value, "The seed", 0, MAX_SEED, "2**128 - 1")


# What a caller gives for a modality of each kind, in the examples of a refusal.
EXAMPLE_VALUES = {registry.IMAGE: "image", registry.SPEECH: "wav_bytes"}


def _either(words: Sequence[str]) -> str:
    return " or ".join(filter(None, [", ".join(words[:-1]), *words[-1:]]))


def inputs(value) -> dict:
    """predict's inputs: a mapping from modality names (strings) to values."""
    if not isinstance(value, Mapping):
        examples = [f"{{{names[-1]!r}: {example}}}" for kind, example in EXAMPLE_VALUES.items()
                    if (names := registry.names(kind))]
        raise InputError(f"predict takes a dict such as {_either(examples)}, not {type(value).__name__}.")
    for key in value:
        if not isinstance(key, str):
            raise InputError(f"Input names must be strings such as {_either([repr(n) for n in registry.names()])}; "
                             f"got {shown(key)} ({type(key).__name__}).")
    return dict(value)


def is_tensor(value) -> bool:
    """A torch tensor, told by its type's module: an attribute such as `detach` could be anything's."""
    return type(value).__module__.split(".")[0] == "torch" and hasattr(type(value), "numel")


def _declared_count(value, limit: int, what: str) -> int:
    """How many numbers a nested list, tuple or other sequence holds, read from the lengths alone and given
    up past `limit`, so that nothing is converted before its size is known: numpy would otherwise copy a
    list of 10^9 references (or a range(10**9)) into gigabytes of floats before any check could run.
    Arrays and tensors inside count by their shape. The items walked are bounded too (twice `limit`: rows
    and their numbers), so that lists of empty lists cannot make the walk itself long."""
    count, walked, stack = 0, 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, np.ndarray):
            count += item.size
        elif is_tensor(item):
            count += int(item.numel())
        elif _is_sequence(item):
            if depth >= MAX_NESTING:
                raise InputError(f"{what}: lists nested more than {MAX_NESTING} deep; give a list of numbers or "
                                 "a list of rows.")
            size = _length(item, what)
            walked += size
            if count + size > limit or walked > 2 * limit:
                return max(count + size, limit + 1)
            stack.extend((element, depth + 1) for element in item)
        else:
            count += 1
        if count > limit:
            return count
    return count


def _is_sequence(value) -> bool:
    """What numpy would walk element by element: lists, tuples, ranges and other objects with a length and
    items (but not text, bytes or arrays, which numpy reads whole)."""
    if isinstance(value, (str, bytes, bytearray, memoryview, np.ndarray, Mapping)) or is_tensor(value):
        return False
    return isinstance(value, Sequence) or (hasattr(type(value), "__len__") and hasattr(type(value), "__getitem__"))


def _length(value, what: str) -> int:
    try:
        return int(len(value))
    except (TypeError, ValueError, OverflowError) as exc:  # len(range(10**20)) overflows; a length can lie
        raise InputError(f"{what} must be an array or a list of numbers; this {type(value).__name__} has no "
                         "usable length.") from exc


def _array(value, what: str, limit: int, too_many: str) -> np.ndarray:
    """`value` as an array of real numbers, unconverted: an array (or a view of any declared size) is
    taken as it is, and a list or tensor only once its size is known to be at most `limit` numbers
    (`too_many`, the message otherwise). The caller checks the shape, then converts with `_finite`."""
    if isinstance(value, np.ma.MaskedArray):  # np.asarray would drop the mask and use the hidden values
        raise InputError(f"{what} must be a plain array, not a masked one; fill the masked entries first "
                         "(array.filled(0.0)).")
    if is_tensor(value):
        if int(value.numel()) > limit:
            raise InputError(too_many)
        value = value.detach().cpu().numpy()
    elif _is_sequence(value) and _declared_count(value, limit, what) > limit:
        raise InputError(too_many)
    try:
        arr = np.asarray(value)  # no copy for an array or a view, however large it claims to be
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # ragged nesting
        raise InputError(f"{what} must be an array of numbers, with every row the same length.") from exc
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise InputError(f"{what} must hold real numbers, not {arr.dtype}.")
    return arr


def _finite(arr: np.ndarray, what: str) -> np.ndarray:
    """An array already known to be small, as finite float32 within the latent bound."""
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"NaN or infinite values in {what.lower()}; give finite numbers.")
    if np.abs(arr).max(initial=0.0) > MAX_LATENT_ABS:
        raise InputError(f"Values in {what.lower()} reach {np.abs(arr).max():.3g} in magnitude; keep them within "
                         f"±{MAX_LATENT_ABS:g} (the prior's standard deviation is 1).")
    return arr


def latent(value, dim: int, what: str = "The latent") -> np.ndarray:
    """One latent vector of `dim` finite numbers, as (dim,) float32."""
    wanted = f"{what} must hold {dim} numbers, one per latent dimension"
    arr = _array(value, what, dim, f"{wanted}; got more.")
    if arr.size != dim or (arr.ndim > 1 and arr.shape[-1] != dim):
        raise InputError(f"{wanted}; got shape {arr.shape}.")
    return _finite(arr, what).reshape(dim)


def latents(value, dim: int) -> np.ndarray:
    """A latent (dim,) or a batch (N, dim) with 1 <= N <= MAX_SAMPLES, as (N, dim) float32."""
    too_many = (f"Decode at most {MAX_SAMPLES} latents of {dim} numbers at once; split them into batches.")
    arr = _array(value, "The latents", MAX_SAMPLES * dim, too_many)
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim or arr.size == 0:
        raise InputError(f"Latents must be ({dim},) or (N, {dim}); got shape {arr.shape}.")
    if arr.ndim == 2 and len(arr) > MAX_SAMPLES:
        raise InputError(f"Decode at most {MAX_SAMPLES} latents at once, not {len(arr)}; split them into batches.")
    return _finite(arr, "The latents").reshape(-1, dim)


def dims(value, dim: int) -> list[int]:
    """Latent dimension indices: 1 to `dim` of them, each from 0 to dim - 1."""
    wanted = f"The dimensions must be a list of indices from 0 to {dim - 1}, such as [0, 3]"
    if isinstance(value, np.ma.MaskedArray):
        raise InputError(f"{wanted}; not a masked array.")
    if is_tensor(value) or isinstance(value, np.ndarray):
        size = int(value.numel()) if is_tensor(value) else value.size
        if not 1 <= size <= dim:  # before any conversion: a view may declare 10^9 entries
            raise InputError(f"Give from 1 to {dim} latent dimensions to traverse, not {size}.")
        value = (value.detach().cpu().numpy() if is_tensor(value) else np.asarray(value)).reshape(-1).tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"{wanted}; not {shown(value)}.")
    count = _length(value, "The dimensions")
    if not 1 <= count <= dim:
        raise InputError(f"Give from 1 to {dim} latent dimensions to traverse, not {count}.")
    return [whole_number(d, "A latent dimension", 0, dim - 1) for d in value]


def kept(value, names: tuple[str, ...]) -> set[str]:
    """restyle's keep: the names of the modalities whose style stays; one name, a list of names, or None
    (keep no style)."""
    wanted = f"keep must be a list of modality names from {', '.join(names)}, such as ['{names[0]}']"
    if value is None:
        return set()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.size > MAX_KEPT_NAMES:  # before .tolist(): a view may declare 10^9
            raise InputError(f"{wanted}; got an array of shape {value.shape}.")
        value = value.tolist()
    if isinstance(value, (bytes, bytearray, Mapping)) or not isinstance(value, (Sequence, Set)):
        raise InputError(f"{wanted}; not {shown(value)} ({type(value).__name__}).")
    if _length(value, "keep") > MAX_KEPT_NAMES:
        raise InputError(f"{wanted}; not {len(value)} of them.")
    for name in value:
        if not isinstance(name, str):
            raise InputError(f"{wanted}; not {shown(name)} ({type(name).__name__}).")
    unknown = set(value) - set(names)
    if unknown:
        raise InputError(f"keep names modalities this model does not have: {shown(sorted(unknown))}; "
                         f"use any of {', '.join(names)}.")
    return set(value)


def traverse(start, dim_list, values, dim: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """traverse's arguments: a latent, the dimensions to vary and the values to set them to."""
    start, dim_list = latent(start, dim), dims(dim_list, dim)
    wanted = f"The traversal values must be a list of 1 to {MAX_TRAVERSE_VALUES} numbers"
    values = _array(values, "The traversal values", MAX_TRAVERSE_VALUES, f"{wanted}; got more.")
    if values.ndim != 1 or not 1 <= len(values) <= MAX_TRAVERSE_VALUES:
        raise InputError(f"{wanted}; got shape {values.shape}.")
    values = _finite(values, "The traversal values")
    if len(dim_list) * len(values) > MAX_SAMPLES:
        raise InputError(f"A traversal decodes one latent per dimension and value: {len(dim_list)} x {len(values)} "
                         f"= {len(dim_list) * len(values)}, more than {MAX_SAMPLES}; use fewer dimensions or values.")
    return start, dim_list, values


def interpolate(start, end, steps, dim: int) -> tuple[np.ndarray, np.ndarray, int]:
    return (latent(start, dim, "The start latent"), latent(end, dim, "The end latent"),
            whole_number(steps, "The number of steps", MIN_INTERPOLATE_STEPS, MAX_INTERPOLATE_STEPS))


def generate(label_value, n, temperature, seed_value, n_classes: int) -> tuple[int, int, float, int | None]:
    return (label(label_value, n_classes), whole_number(n, "The number of samples", 1, MAX_SAMPLES),
            real_number(temperature, "The temperature", 0.0, MAX_TEMPERATURE), seed(seed_value))
