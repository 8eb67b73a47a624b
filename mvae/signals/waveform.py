"""A recording as a caller holds it (a numpy or torch array, a list) -> mono float32 samples at the model's
rate: the shape, sample rate and sample values are held to the budget first, then the samples are read on
their PCM scale, a block at a time, mixed to mono and resampled as they come."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from ..config import AudioConfig
from ..errors import InputError
from .resampling import StreamResampler

MAX_CHANNELS = 8
MIN_INPUT_RATE = 4000  # below this even the first formants of speech are gone
# Ceilings of the library itself, applied on top of a checkpoint's AudioConfig (the lower of the two wins).
# The config travels inside every model file, and a resealed file can raise its limits at will, so these are
# what bound a request, whatever model the app serves. Memory does not depend on them: a recording is read
# in blocks, mixed to mono and resampled as it goes. What they bound is work (every sample decoded costs
# time), and the 60 s rule that people have been told since the first release stays as it was.
MAX_INPUT_RATE = 384_000
MAX_INPUT_SECONDS = 60.0
# Samples decoded per request (frames x channels): the longest recording at the highest rate in mono, about
# a second of work at worst. A spoken digit needs about a second of voice; 8 channels x 384 kHz x 60 s (184 M,
# the probe's 200 KB FLAC that cost 1 GB) is refused from its header, and a few seconds of speech fit at any
# rate and layout. It is no lower because a minute of mono at any rate has been accepted (and tested) since
# odd rates were allowed.
MAX_INPUT_SAMPLES = int(MAX_INPUT_SECONDS * MAX_INPUT_RATE)
# Samples (frames x channels) read at a time: 1 MB of float32, the most of the undecimated input a request
# holds. Large enough that soundfile's bookkeeping per read (a seek to where it already is, which FLAC
# and MP3 decoders take seriously) costs little next to the decoding.
DECODE_BLOCK_SAMPLES = 2**18
# Float samples are nominally within +-1, integer PCM within +-2**63; anything larger is not a recording,
# and it would overflow float32 once multiplied by the resampler's taps.
MAX_SAMPLE_MAGNITUDE = 1e12


def check_rate(rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise InputError(f"The sample rate must be a whole number of samples per second, not {rate!r:.80}.")
    try:
        whole = float(rate).is_integer()
    except OverflowError:  # a Python int or Fraction beyond float's range
        if rate < 0:
            raise InputError(f"The sample rate must be positive: {MIN_INPUT_RATE} Hz or more.") from None
        raise InputError(f"The sample rate is far too high; please use {MAX_INPUT_RATE} Hz or less.") from None
    if not whole:
        raise InputError(f"The sample rate must be a whole number of samples per second, not {rate!r:.80}.")
    rate = int(rate)
    if rate < MIN_INPUT_RATE:
        raise InputError(f"The sample rate is {rate} Hz; please record at {MIN_INPUT_RATE} Hz or more "
                         "(8000 Hz or 16000 Hz are typical).")
    return rate


def _pcm_bits(samples: np.ndarray, widths: tuple[int, ...]) -> int:
    """The narrowest of `widths` (in bits) whose integer range holds every sample."""
    low, high = int(samples.min(initial=0)), int(samples.max(initial=0))
    signed = samples.dtype.kind == "i"
    for bits in widths:
        if signed and -(1 << (bits - 1)) <= low and high < 1 << (bits - 1):
            return bits
        if not signed and high < 1 << bits:
            return bits
    return 8 * samples.dtype.itemsize


def _pcm_scale(samples: np.ndarray) -> tuple[float, float]:
    """(centre, full scale) that samples are read by: x -> (x - centre) / full scale, on [-1, 1).

    Integer samples are PCM read by their values, not by the width of the array that holds them, so an
    int16 recording kept in an int32 or int64 array (as `np.array` of Python ints makes) is heard at its
    own level instead of 96 dB down:
    - int8 and int16 arrays are PCM of their own width;
    - wider signed arrays are PCM of the narrowest of 16, 24, 32 or 64 bits that holds every sample;
    - unsigned arrays are offset-binary PCM (centred on half the range, as 8-bit WAV is) of the narrowest
      of 8, 16, 24, 32 or 64 bits that holds every sample.
    A genuine 32-bit recording is read on the 32-bit scale unless its peak is under -48 dBFS; then it is
    read louder, which matters only to the silence check, as the front end normalises the level itself.
    Floats are read as they are.
    """
    if samples.dtype.kind == "u":
        half = 2.0 ** (_pcm_bits(samples, (8, 16, 24, 32, 64)) - 1)
        return half, half
    if samples.dtype.kind == "i":
        widths = (8 * samples.dtype.itemsize,) if samples.dtype.itemsize <= 2 else (16, 24, 32, 64)
        return 0.0, 2.0 ** (_pcm_bits(samples, widths) - 1)
    if samples.dtype.kind != "f":
        raise InputError(f"Audio samples must be numbers (integer or float PCM), not {samples.dtype}.")
    return 0.0, 1.0


def _scaled(samples: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    centre, full_scale = scale
    if samples.dtype.kind == "f":
        return samples
    return ((samples.astype(np.float64) - centre) / full_scale).astype(np.float32)


def _as_float(samples) -> np.ndarray:
    """Samples as float32 on the [-1, 1) full scale, read as `_pcm_scale` says."""
    samples = as_array(samples)
    scaled = _scaled(samples, _pcm_scale(samples))
    return scaled.astype(np.float32, copy=False)


SHAPE_HINT = f"A waveform must be (samples,) or (samples, channels) with at most {MAX_CHANNELS} channels"


def _check_extent(shape: tuple[int, ...]) -> None:
    """Refuses a shape that no waveform within the budget has, before anything of that shape is made."""
    if len(shape) not in (1, 2):
        raise InputError(f"{SHAPE_HINT}; got {len(shape)} dimensions (shape {tuple(shape)!s:.80}).")
    # The longest side too: (10**12, 0) holds no sample, but a loop over its frames would run for an hour.
    if math.prod(shape) > MAX_INPUT_SAMPLES or max(shape) > MAX_INPUT_SAMPLES:
        raise InputError(f"The waveform has shape {tuple(shape)} ({math.prod(shape):,} samples), more than the "
                         f"{MAX_INPUT_SAMPLES:,} this demo reads; a spoken digit needs a few seconds of mono audio, "
                         "so please give a shorter recording.")


def _nested_extent(value) -> tuple[int, ...]:
    """The shape a nested list (or tuple) of numbers would have, from its first items, without walking deeper
    than a waveform can be: numpy's own discovery raises on a list nested thousands deep, and converts
    a list of huge arrays in full."""
    shape: list[int] = []
    item = value
    while len(shape) <= 2:
        if isinstance(item, (list, tuple)):
            shape.append(len(item))
            if not item:
                break
            item = item[0]
        elif hasattr(item, "shape") and hasattr(item, "dtype"):  # an array (numpy's or torch's) inside the list
            shape.extend(int(n) for n in tuple(item.shape)[:3])
            break
        else:
            break
    if len(shape) > 2:
        raise InputError(f"{SHAPE_HINT}; got a list nested more than 2 deep.")
    return tuple(shape)


def as_array(value) -> np.ndarray:
    """`value` as a numpy array of its own dtype; a shape that cannot be a waveform within the budget is
    refused in words before anything is converted or copied (a broadcast view of 10**9 samples costs
    nothing until it is)."""
    if hasattr(value, "detach") and hasattr(value, "shape"):  # a torch tensor, as torch code tends to hold audio
        _check_extent(tuple(value.shape))
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:  # bfloat16 and the like have no numpy dtype
            raise InputError(f"Audio samples must be integer or float PCM; convert the tensor to float32 "
                             f"(got {getattr(value, 'dtype', '?')}).") from exc
    elif isinstance(value, (list, tuple)):
        _check_extent(_nested_extent(value))
    elif isinstance(value, np.ndarray):
        _check_extent(value.shape)
        if isinstance(value, np.ma.MaskedArray):
            # A masked sample is a missing one: heard as silence (the level of the samples that are there,
            # which unsigned PCM centres far from 0) rather than as whatever the buffer holds.
            with np.errstate(all="ignore"):  # inf - inf in the mean: NaN, which the samples' check refuses
                value = value.filled(value.mean() if value.count() else 0) if value.dtype.kind in "iuf" else value.data
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # ragged lists, odd objects
        raise InputError(f"{SHAPE_HINT}, of numbers with every row the same length; got "
                         f"{type(value).__name__} that is not.") from exc
    _check_extent(array.shape)
    if array.dtype.kind not in "iuf":
        raise InputError(f"Audio samples must be numbers (integer or float PCM), not {array.dtype}.")
    return array


class MonoStream:
    """Blocks of samples, (frames,) or (frames, channels), already on the [-1, 1) scale -> one mono float32
    signal at the model's rate with its DC offset removed. Each block is checked, mixed to mono and
    resampled as it comes, so memory does not grow with the channels, the rate or the length."""

    def __init__(self, rate: int, model_rate: int, most_frames: int):
        self.resampler = StreamResampler(Fraction(model_rate, rate), most_frames)
        self.total = 0.0

    def feed(self, block: np.ndarray) -> None:
        peak = float(np.abs(block).max(initial=0.0))
        if not math.isfinite(peak):
            raise InputError("The audio contains NaN or infinite samples; please give a valid recording.")
        if peak > MAX_SAMPLE_MAGNITUDE:
            raise InputError(f"The audio has samples as large as {peak:.3g}, which no recording has; please give "
                             "float samples within -1..1 or integer PCM.")
        block = block.astype(np.float32, copy=False)
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block
        self.total += float(mono.sum(dtype=np.float64))
        self.resampler.feed(mono)

    @property
    def frames(self) -> int:
        return self.resampler.fed

    def finish(self) -> np.ndarray:
        return self.resampler.finish(self.total / self.frames if self.frames else 0.0)



def to_mono(samples, rate: int, cfg: AudioConfig) -> np.ndarray:
    """(samples,) or (samples, channels) at `rate` -> mono float32 at cfg's rate, its DC offset removed.
    Read a block at a time, so that no float copy of the whole input is made."""
    rate = check_rate(rate)
    max_rate = min(cfg.max_input_rate, MAX_INPUT_RATE)
    if rate > max_rate:
        raise InputError(f"The sample rate is {rate} Hz; please use {max_rate} Hz or less.")
    samples = as_array(samples)
    if samples.ndim == 2 and not 1 <= samples.shape[1] <= MAX_CHANNELS:
        raise InputError(f"{SHAPE_HINT}; got shape {samples.shape}.")
    scale = _pcm_scale(samples)
    stream = MonoStream(rate, cfg.sample_rate, len(samples))
    step = max(DECODE_BLOCK_SAMPLES // (samples.shape[1] if samples.ndim == 2 else 1), 1)
    for start in range(0, len(samples), step):
        stream.feed(_scaled(samples[start:start + step], scale))
    return stream.finish()
