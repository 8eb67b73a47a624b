"""Checks on the arguments of the public API, each giving the clean value or an InputError that says what to pass.

The bounds keep every call small: a caller cannot ask for more decoding, and so more memory and time,
than a screenful of results needs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import InputError

MAX_SAMPLES = 256  # generate's n, and the size of any batch of latents decoded at once
MAX_TEMPERATURE = 10.0
MAX_SEED = 2**128 - 1  # as much entropy as numpy's SeedSequence draws itself
MAX_TRAVERSE_VALUES = 64
MIN_INTERPOLATE_STEPS, MAX_INTERPOLATE_STEPS = 2, 64
# Latents live near the prior N(0, I); a coordinate of 1000 standard deviations means nothing, and
# far larger ones can overflow the decoders to infinity.
MAX_LATENT_ABS = 1000.0


def whole_number(value, what: str, low: int, high: int, high_text: str | None = None) -> int:
    """An integer in [low, high]; a float that is a whole number counts (a slider may give 4.0)."""
    wanted = f"{what} must be a whole number from {low} to {high_text or high}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{wanted}, not {value!r} ({type(value).__name__}).")
    if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
        raise InputError(f"{wanted}, not {value!r}.")
    value = int(value)
    if not low <= value <= high:
        raise InputError(f"{wanted}, not {value}.")
    return value


def real_number(value, what: str, low: float, high: float) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, not {value!r} ({type(value).__name__}).")
    try:
        value = float(value)
    except OverflowError:  # an int past float's range
        value = math.inf if value > 0 else -math.inf
    if not low <= value <= high:  # also refuses NaN
        raise InputError(f"{what} must be a number from {low:g} to {high:g}, not {value}.")
    return value


def label(value, n_classes: int) -> int:
    return whole_number(value, "The digit label", 0, n_classes - 1)


def seed(value) -> int | None:
    return None if value is None else whole_number(value, "The seed", 0, MAX_SEED, "2**128 - 1")


def inputs(value) -> dict:
    """predict's inputs: a mapping from modality names (strings) to values."""
    if not isinstance(value, Mapping):
        raise InputError("predict takes a dict such as {'kannada': image} or {'speech': wav_bytes}, "
                         f"not {type(value).__name__}.")
    for key in value:
        if not isinstance(key, str):
            raise InputError(f"Input names must be strings such as 'farsi', 'kannada' or 'speech'; got {key!r} "
                             f"({type(key).__name__}).")
    return dict(value)


def _numbers(value, what: str) -> np.ndarray:
    """An array of finite floats from any array-like of real numbers."""
    try:
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise InputError(f"{what} must be an array of numbers, with every row the same length.") from exc
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise InputError(f"{what} must hold real numbers, not {arr.dtype}.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"NaN or infinite values in {what.lower()}; give finite numbers.")
    if np.abs(arr).max(initial=0.0) > MAX_LATENT_ABS:
        raise InputError(f"Values in {what.lower()} reach {np.abs(arr).max():.3g} in magnitude; keep them within "
                         f"±{MAX_LATENT_ABS:g} (the prior's standard deviation is 1).")
    return arr


def latent(value, dim: int, what: str = "The latent") -> np.ndarray:
    """One latent vector of `dim` finite numbers, as (dim,) float32."""
    arr = _numbers(value, what)
    if arr.size != dim or (arr.ndim > 1 and arr.shape[-1] != dim):
        raise InputError(f"{what} must hold {dim} numbers, one per latent dimension; got shape {arr.shape}.")
    return arr.reshape(dim)


def latents(value, dim: int) -> np.ndarray:
    """A latent (dim,) or a batch (N, dim) with 1 <= N <= MAX_SAMPLES, as (N, dim) float32."""
    arr = _numbers(value, "The latents")
    if arr.ndim not in (1, 2) or arr.shape[-1] != dim or arr.size == 0:
        raise InputError(f"Latents must be ({dim},) or (N, {dim}); got shape {arr.shape}.")
    arr = arr.reshape(-1, dim)
    if len(arr) > MAX_SAMPLES:
        raise InputError(f"Decode at most {MAX_SAMPLES} latents at once, not {len(arr)}; split them into batches.")
    return arr


def dims(value, dim: int) -> list[int]:
    """Latent dimension indices: 1 to `dim` of them, each from 0 to dim - 1."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"The dimensions must be a list of indices from 0 to {dim - 1}, such as [0, 3]; "
                         f"not {value!r}.")
    if not 1 <= len(value) <= dim:
        raise InputError(f"Give from 1 to {dim} latent dimensions to traverse, not {len(value)}.")
    return [whole_number(d, "A latent dimension", 0, dim - 1) for d in value]


def traverse(start, dim_list, values, dim: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """traverse's arguments: a latent, the dimensions to vary and the values to set them to."""
    start, dim_list = latent(start, dim), dims(dim_list, dim)
    values = _numbers(values, "The traversal values")
    if values.ndim != 1 or not 1 <= len(values) <= MAX_TRAVERSE_VALUES:
        raise InputError(f"The traversal values must be a list of 1 to {MAX_TRAVERSE_VALUES} numbers; "
                         f"got shape {values.shape}.")
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
