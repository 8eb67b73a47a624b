"""Speech front end shared by data preparation, training and the app, in numpy alone (no torch, no scipy).

Every recording, whether an FSDD file or a browser microphone take, goes through `AudioFrontEnd.prepare`:
mix to mono, resample to 8 kHz, trim the silence around the voice, normalise the peak, centre it in a
fixed-length window and take the log-mel spectrogram. `waveform_from_log_mel` goes back the other way
(inverse mel filterbank, then Griffin-Lim) so that a decoded log-mel can be heard.

The log-mel and Griffin-Lim are torchaudio's (`MelSpectrogram` with an HTK mel scale, `InverseMelScale`,
`GriffinLim` with zero initial phase), written out in numpy so that the app runs without torch and in the
browser (Pyodide has numpy); tests hold them to torchaudio's results.
"""

from __future__ import annotations

import functools
import io
import math
import numbers
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf

from ..config import AudioConfig
from ..errors import InputError

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
TRIM_CHUNK_FRAMES = 1024
MAX_LOG_MEL = 30.0  # exp() of a wild decoder output must stay finite
FORMATS = "WAV, FLAC or OGG"
# Containers identified from the bytes (soundfile's format) that are decoded; the rest of what libsndfile
# reads (AIFF, AU, VOC, MAT5, ...) is refused, as no browser records it and each one is more parser exposed.
# MP3 is decoded (people have it) but not advertised: its truncation is told by walking its frames.
ACCEPTED_FORMATS = ("WAV", "WAVEX", "FLAC", "OGG", "MP3")
GRIFFIN_LIM_MOMENTUM = 0.99  # torchaudio's default: "fast" Griffin-Lim
# Resampling ratios are rounded to a fraction whose terms are at most MAX_RATIO_TERM. A polyphase
# resampler's filter grows with the terms of the reduced ratio (torchaudio's took 6.5 GB for 8000/44101
# exactly; scipy's is 20 taps per term), while 119/656 costs next to nothing. Every rate in common
# use (8, 11.025, 16, 22.05, 32, 44.1, 48, 88.2, 96, 176.4, 192, 352.8, 384 kHz) reduces to terms within
# the bound and is resampled exactly; any other rate ends up off by less than 1/MAX_RATIO_TERM (0.1 %)
# in speed and pitch, far less than one speaker varies from one take to the next.
MAX_RATIO_TERM = 1000
MAX_RESAMPLE_FACTOR = 64  # keeps both terms >= 1 after rounding, and the filter short


@dataclass
class PreparedSpeech:
    log_mel: np.ndarray  # (n_mels, n_frames) float32: natural log of mel power + log_floor
    waveform: np.ndarray  # the whole input, mono at sample_rate
    voiced: np.ndarray  # the trimmed, level-normalised segment the log-mel was taken from
    span: tuple[int, int]  # start/end sample of the voiced segment within `waveform`
    sample_rate: int


def _silent_error() -> InputError:
    return InputError("The recording is silent: check that the microphone is on and not muted, then speak a digit.")


def _check_rate(rate) -> int:
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


def wav_shortfall(data: bytes) -> tuple[int, int] | None:
    """(bytes present, bytes declared) of a WAV's data chunk when the file ends before it does, else None.

    libsndfile quietly reads what is there, so a cut-off upload would be heard as a shorter word.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None
    order = "<" if data[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack(order + "I", data[pos + 4:pos + 8])
        if data[pos:pos + 4] == b"data":
            present = len(data) - pos - 8
            if size in (0, 0xFFFFFFFF):  # a streaming writer that never filled the size in
                return None
            return (present, size) if present < size else None
        pos += 8 + size + (size & 1)
    return None


# MPEG audio frame headers (ISO 11172-3 and 13818-3): kbit/s by bitrate index, for MPEG-1 layers I-III and
# for MPEG-2/2.5 layer I and layers II/III; sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5).
_MPEG_KBPS = {
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
ID3V1_SIZE = 128


def _looks_like(data: bytes) -> str | None:
    """The accepted container whose signature the bytes start with, if any: an unreadable file that starts
    like one was most likely cut off before its header ended, which a person can act on."""
    for magic, container in ((b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "OGG"), (b"ID3", "MP3")):
        if data.startswith(magic):
            return container
    return "MP3" if len(data) >= 4 and _mpeg_frame_size(data[:4]) else None


def _mpeg_frame_size(header: bytes) -> int | None:
    """The length in bytes of the MPEG audio frame this 4-byte header starts, or None if it is not one (or is
    free-format, whose length the header does not give)."""
    b1, b2 = header[1], header[2]
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3  # layer bits: 3 is layer I, 1 is layer III
    rate_index, kbps_index, padding = (b2 >> 2) & 3, b2 >> 4, (b2 >> 1) & 1
    if version == 1 or layer == 0 or rate_index == 3 or kbps_index in (0, 15):
        return None
    rate = _MPEG_RATES[version][rate_index]
    bits_per_s = 1000 * _MPEG_KBPS[(version == 3, layer)][kbps_index]
    if layer == 3:
        return (12 * bits_per_s // rate + padding) * 4
    slots = 72 if layer == 1 and version != 3 else 144  # MPEG-2 layer III frames hold half the samples
    return slots * bits_per_s // rate + padding


def _mp3_frames(data: bytes):
    """(start, size) of each MPEG audio frame from the first (after an ID3v2 tag) until bytes that are not a
    frame header (a trailing tag, a free-format stream) or the end; the last may run past the end."""
    end = len(data) - (ID3V1_SIZE if data[-ID3V1_SIZE:-ID3V1_SIZE + 3] == b"TAG" else 0)
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for byte in data[6:10]:  # syncsafe: 7 bits a byte
            size = size << 7 | (byte & 0x7F)
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    while pos < end:
        size = _mpeg_frame_size(data[pos:pos + 4]) if end - pos >= 4 else (4 if data[pos] == 0xFF else None)
        if size is None:
            return
        yield pos, size
        pos += size


def _mp3_shortfall(data: bytes) -> tuple[int, int] | None:
    """(bytes present, bytes the stream needs) when an MPEG audio stream ends inside a frame, else None.

    mpg123 decodes what is there, so a cut-off upload would be heard as a shorter word. A cut exactly
    between frames leaves a valid, shorter stream, which only a Xing/Info/VBRI header's frame count
    tells apart (`decode` compares it with what was decoded).
    """
    end = len(data) - (ID3V1_SIZE if data[-ID3V1_SIZE:-ID3V1_SIZE + 3] == b"TAG" else 0)
    for pos, size in _mp3_frames(data):
        if pos + size > end:
            return end, pos + size
    return None


def _mp3_counts_frames(data: bytes) -> bool:
    """Whether the stream's first frame is a Xing, Info or VBRI header, whose frame count mpg123 reports
    as the length: exact then, where without one it is a guess from the file's size."""
    for pos, size in _mp3_frames(data):
        first = data[pos:pos + size]
        return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    return False


OGG_PAGE_HEADER = 27  # "OggS", version, flags, granule, serial, sequence, CRC, segment count
OGG_LAST_PAGE = 0x04  # the flag of a logical stream's final page


def _ogg_truncated(data: bytes) -> bool:
    """Whether an Ogg stream ends inside a page or before its final page.

    libsndfile takes an Ogg file's length from the last complete page it finds, so a cut-off upload would
    be heard as a shorter word; every page says how long it is, and the last one is flagged as such.
    The walk stops, finding nothing, at bytes that are not a page.
    """
    pos, flags = 0, OGG_LAST_PAGE
    while pos < len(data):
        head = data[pos:pos + 4]
        if head != b"OggS":  # a page's start cut short, or bytes that are not a page
            return len(head) < 4 and b"OggS".startswith(head)
        if pos + OGG_PAGE_HEADER > len(data):
            return True
        segments = data[pos + OGG_PAGE_HEADER - 1]
        table = data[pos + OGG_PAGE_HEADER:pos + OGG_PAGE_HEADER + segments]
        if len(table) < segments:
            return True
        flags = data[pos + 5]
        pos += OGG_PAGE_HEADER + segments + sum(table)
        if pos > len(data):
            return True
    return not flags & OGG_LAST_PAGE


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
    samples = _as_array(samples)
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


def _as_array(value) -> np.ndarray:
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


def resample_ratio(ratio) -> Fraction:
    """`ratio` (new rate / old rate) as the nearest fraction whose terms are both at most MAX_RATIO_TERM."""
    ratio = Fraction(ratio)
    if not 1 / MAX_RESAMPLE_FACTOR <= ratio <= MAX_RESAMPLE_FACTOR:
        raise InputError(f"Cannot resample by a factor of {float(ratio):.4g}; "
                         f"the factor must lie between 1/{MAX_RESAMPLE_FACTOR} and {MAX_RESAMPLE_FACTOR}.")
    if ratio > 1:
        return 1 / (1 / ratio).limit_denominator(MAX_RATIO_TERM)
    return ratio.limit_denominator(MAX_RATIO_TERM)


def resample(wave: np.ndarray, ratio) -> np.ndarray:
    """`wave` (time on the last axis) stretched to `ratio` times as many samples: scipy's `resample_poly`
    (a Kaiser-windowed sinc, 20 taps per term of the ratio, beta 5), computed here in numpy so that the app
    needs no scipy (140 MB); tests hold it to scipy's result.

    `ratio` is the new rate over the old one, e.g. Fraction(8000, 44100); it is rounded by
    `resample_ratio`, which bounds the filter's size and so the cost, whatever the rates; the products
    read the input through strided views, so the memory is the input's twice.
    """
    frac = resample_ratio(ratio)
    if frac == 1:
        return wave
    up, down = frac.numerator, frac.denominator
    x = np.asarray(wave, np.float32)
    bank, half = _polyphase_bank(up, down)
    per_phase = bank.shape[1]
    # Output m is the filter centred on input position (m * down - pre) / up, as resample_poly aligns it.
    pre = down - half % down
    first = (half + pre) // down
    n_out = -(-x.shape[-1] * up // down)
    at = np.arange(first, first + min(up, n_out)) * down - pre
    phase, last = at % up, at // up + per_phase  # last: the newest input an output reads, in the padded input
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, [(0, 0)] * (x.ndim - 1) + [(per_phase, per_phase)]), per_phase, axis=-1)
    out = np.empty((*x.shape[:-1], n_out), np.float32)
    # Outputs up apart share a phase and read inputs down apart: one matrix-vector product each.
    for r in range(len(at)):
        count = len(range(r, n_out, up))
        start = last[r] - per_phase + 1
        out[..., r::up] = windows[..., start:start + down * (count - 1) + 1:down, :] @ bank[phase[r]]
    return out


@functools.lru_cache(maxsize=16)
def _polyphase_bank(up: int, down: int) -> tuple[np.ndarray, int]:
    """resample_poly's filter for up/down split into its `up` phases, each reversed for a dot product with
    the inputs in time order: bank[phase, -1 - i] = taps[phase + i * up]; and the filter's half length."""
    widest = max(up, down)
    half = 10 * widest
    taps = np.sinc(np.arange(-half, half + 1) / widest) * np.kaiser(2 * half + 1, 5.0)
    taps *= up / taps.sum()
    per_phase = -(-len(taps) // up)
    bank = np.zeros(up * per_phase)
    bank[:len(taps)] = taps
    bank = bank.reshape(per_phase, up).T[:, ::-1].astype(np.float32)
    bank.setflags(write=False)  # shared by every call with this ratio
    return bank, half


class _StreamResampler:
    """`resample` of a 1-D signal that arrives in blocks, with the same result, holding only the inputs that
    outputs still to come will read.

    Output m is the dot product of one phase of the filter with the `taps` inputs of its window (in the
    input padded with `taps` zeros each side); once a block arrives, every output whose window it
    completes is computed, and the inputs before the next window are let go. `finish` removes a DC offset
    afterwards, exactly: resampling is linear, so resample(x - mean) = resample(x) - mean * resample(ones),
    and resample(ones) is each output's sum of the taps that fall on the signal rather than the padding.
    """

    def __init__(self, ratio, most: int):
        frac = resample_ratio(ratio)
        self.up, self.down, self.most = frac.numerator, frac.denominator, most
        self.out = np.empty(-(-most * self.up // self.down), np.float32)
        self.fed = self.done = 0
        self.bank = None
        if frac != 1:
            self.bank, half = _polyphase_bank(self.up, self.down)
            self.taps = self.bank.shape[1]
            # resample_poly's alignment, as `resample` has it: output m's filter centre is at input
            # ((first + m) * down - pre) / up.
            self.pre = self.down - half % self.down
            self.first = (half + self.pre) // self.down
            self.held = np.zeros(self.taps, np.float32)  # the padded input, from position `base` on
            self.base = 0

    def _window(self, m):
        """(first padded input position, filter phase) of output m; m may be an int or an int array."""
        at = (self.first + m) * self.down - self.pre
        return at // self.up + 1, at % self.up

    def feed(self, x: np.ndarray) -> None:
        if self.fed + len(x) > self.most:
            raise ValueError(f"the resampler was sized for {self.most} samples, not {self.fed + len(x)}")
        self.fed += len(x)
        if self.bank is None:
            self.out[self.done:self.done + len(x)] = x
            self.done += len(x)
            return
        self._advance(np.concatenate([self.held, np.asarray(x, np.float32)]), len(self.out))

    def _advance(self, held: np.ndarray, limit: int) -> None:
        up, down, taps = self.up, self.down, self.taps
        end = self.base + len(held)
        # The last output whose window [start, start + taps) lies within what is held.
        stop = min(limit, ((end - taps) * up - 1 + self.pre) // down - self.first + 1)
        if stop > self.done:
            if down < taps:  # see `_split_bank`: the inputs as rows of `down`, zeros after the last
                rows = np.concatenate([held, np.zeros(down, np.float32)])
            else:
                windows = np.lib.stride_tricks.sliding_window_view(held, taps)
            # Outputs up apart share a phase and read inputs down apart: matrix-vector products.
            for m in range(self.done, min(self.done + up, stop)):
                start, phase = self._window(m)
                count = len(range(m, stop, up))
                start -= self.base
                if down < taps:
                    split = self._split_bank[phase]
                    grid = rows[start:start + down * (count + len(split) - 1)].reshape(-1, down)
                    acc = grid[:count] @ split[0]
                    for i in range(1, len(split)):
                        acc += grid[i:i + count] @ split[i]
                    self.out[m:stop:up] = acc
                else:
                    self.out[m:stop:up] = windows[start:start + down * (count - 1) + 1:down] @ self.bank[phase]
            self.done = stop
        drop = min(int(self._window(self.done)[0]) - self.base, len(held))
        self.held, self.base = held[drop:], self.base + drop

    @functools.cached_property
    def _split_bank(self) -> np.ndarray:
        """(up, q, down): each phase of the filter, zero-padded to q * down taps, in rows of `down`.

        When a filter is longer than the step between outputs (downsampling by at most 20 or so), the
        windows overlap, and a matrix of overlapping rows is multiplied by numpy's own loop, about ten times
        slower than BLAS. Split into rows of `down`, the inputs are a plain (n, down) matrix, and each
        output is the sum of q products of consecutive rows of it with the q pieces of the filter.
        """
        q = -(-self.taps // self.down)
        split = np.zeros((self.up, q * self.down), np.float32)
        split[:, :self.taps] = self.bank
        return split.reshape(self.up, q, self.down)

    def finish(self, mean: float = 0.0) -> np.ndarray:
        """Every output of the samples fed (mean subtracted from the input first), as float32."""
        n_out = -(-self.fed * self.up // self.down)
        if self.bank is None:
            return self.out[:n_out] - np.float32(mean)
        self._advance(np.concatenate([self.held, np.zeros(self.taps, np.float32)]), n_out)
        out = self.out[:n_out]
        if mean:
            sums = np.zeros((self.up, self.taps + 1))
            np.cumsum(self.bank, axis=1, dtype=np.float64, out=sums[:, 1:])
            step = DECODE_BLOCK_SAMPLES // 4  # a few MB of indices at a time
            for lo in range(0, n_out, step):
                start, phase = self._window(np.arange(lo, min(lo + step, n_out), dtype=np.int64))
                before = np.clip(self.taps - start, 0, self.taps)  # taps that fall before the signal begins
                within = np.clip(self.taps + self.fed - start, 0, self.taps)  # taps before it ends
                out[lo:lo + len(start)] -= (mean * (sums[phase, within] - sums[phase, before])).astype(np.float32)
        return out


class _MonoStream:
    """Blocks of samples, (frames,) or (frames, channels), already on the [-1, 1) scale -> one mono float32
    signal at the model's rate with its DC offset removed. Each block is checked, mixed to mono and
    resampled as it comes, so memory does not grow with the channels, the rate or the length."""

    def __init__(self, rate: int, model_rate: int, most_frames: int):
        self.resampler = _StreamResampler(Fraction(model_rate, rate), most_frames)
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


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: AudioConfig) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, unnormalised, as torchaudio's."""
    freqs = np.linspace(0, cfg.sample_rate // 2, cfg.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(cfg.f_min), _hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def _hann(n: int) -> np.ndarray:
    """The periodic Hann window (torch.hann_window's default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def stft(wave: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """(..., N) -> (..., n_fft // 2 + 1, frames) complex, centred with reflection, as torch.stft(center=True)."""
    pad = [(0, 0)] * (wave.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wave, pad, mode="reflect"), n_fft, axis=-1)[..., ::hop, :]
    return np.swapaxes(np.fft.rfft(frames * window, axis=-1), -1, -2)


def istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """The inverse of `stft` by weighted overlap-add, as torch.istft(center=True) without a length."""
    frames = np.fft.irfft(np.swapaxes(spec, -1, -2), n=n_fft, axis=-1).astype(np.float32) * window  # (..., T, n_fft)
    count = frames.shape[-2]
    size = n_fft + hop * (count - 1)
    out = np.zeros((*frames.shape[:-2], size), np.float32)
    envelope = _envelope(window.tobytes(), n_fft, hop, count)
    if n_fft % hop == 0:  # overlap-add as n_fft / hop shifted block sums rather than one add per frame
        blocks = out.reshape(*out.shape[:-1], -1, hop)
        pieces = frames.reshape(*frames.shape[:-1], n_fft // hop, hop)
        for k in range(n_fft // hop):
            blocks[..., k:k + count, :] += pieces[..., :, k, :]
    else:
        for t in range(count):
            out[..., t * hop:t * hop + n_fft] += frames[..., t, :]
    half = n_fft // 2
    return out[..., half:size - half] / envelope[half:size - half]


@functools.lru_cache(maxsize=8)
def _envelope(window: bytes, n_fft: int, hop: int, count: int) -> np.ndarray:
    """The overlap-added squared window that istft divides by."""
    square = np.frombuffer(window, np.float32).astype(np.float64) ** 2
    envelope = np.zeros(n_fft + hop * (count - 1))
    for t in range(count):
        envelope[t * hop:t * hop + n_fft] += square
    return envelope.astype(np.float32)


class AudioFrontEnd:
    def __init__(self, cfg: AudioConfig):
        self.cfg = cfg
        self.filterbank = mel_filterbank(cfg)  # (freqs, mels)
        self.window = _hann(cfg.n_fft)

    @functools.cached_property
    def _unmel(self) -> np.ndarray:
        """(freqs, mels): the least-squares, least-norm inverse of the filterbank, as InverseMelScale's."""
        return np.linalg.pinv(self.filterbank.T.astype(np.float64)).astype(np.float32)

    def decode(self, data: bytes) -> tuple[np.ndarray, int]:
        """File bytes -> (the recording as mono float32 at the model's rate, that rate).

        The container is told from the bytes, not from a name, and must be one of ACCEPTED_FORMATS; the
        header's rate, channels and length are held to the budget (`_check_size`) before a sample is
        decoded; then the samples are read a block at a time, each mixed to mono and resampled as it
        comes, so that the memory a request takes does not grow with what the header declares. A file
        that ends before its header says it does is refused rather than heard as a shorter word.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"Audio must be given as file bytes ({FORMATS}), not {type(data).__name__}.")
        data = bytes(data)
        if len(data) == 0:
            raise InputError("There is no recording: the audio is empty. Record or upload a spoken digit.")
        try:
            info = sf.info(io.BytesIO(data))
        except (RuntimeError, TypeError, ValueError, EOFError, OverflowError) as exc:
            container = _looks_like(data)
            hint = ""
            if container:
                article = "an" if container in ("OGG", "MP3") else "a"
                hint = f" They start like {article} {container} file that is cut off: give the complete file."
            raise InputError(f"These bytes are not readable audio; please give a {FORMATS} file.{hint}") from exc
        if info.format not in ACCEPTED_FORMATS:
            raise InputError(f"This is an audio file of a kind this demo does not read ({info.format_info}); please "
                             f"give a {FORMATS} file.")
        shortfall = wav_shortfall(data)
        if shortfall:
            raise self._truncated(info.format, shortfall[0] / shortfall[1])
        if (info.format == "MP3" and _mp3_shortfall(data)) or (info.format == "OGG" and _ogg_truncated(data)):
            raise self._truncated(info.format)
        if info.frames <= 0:
            raise InputError("There is no recording: the audio file holds no samples. Record or upload a spoken digit.")
        rate = _check_rate(info.samplerate)
        self._check_size(info.frames, rate, info.channels)
        stream = _MonoStream(rate, self.cfg.sample_rate, info.frames)
        block = np.empty((min(DECODE_BLOCK_SAMPLES // info.channels, info.frames), info.channels), np.float32)
        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                # Never more than the header declared, which the budget allowed, whatever follows it.
                while stream.frames < info.frames:
                    want = min(len(block), info.frames - stream.frames)
                    got = f.read(want, dtype="float32", always_2d=True, out=block[:want])
                    if len(got) == 0:
                        break
                    stream.feed(got)
        except InputError:  # the samples' own fault (NaN, say), said as such: a ValueError too
            raise
        except (RuntimeError, TypeError, ValueError, EOFError, OverflowError) as exc:
            raise InputError(f"The {info.format} file is damaged or truncated; please give the complete file, or "
                             "record again.") from exc
        # An MP3's length without a frame count is mpg123's guess from the file's size and first bitrate;
        # there the walk of its frames above is the check.
        counted = info.format != "MP3" or _mp3_counts_frames(data)
        if counted and stream.frames < info.frames:
            raise self._truncated(info.format, stream.frames / info.frames)
        return stream.finish(), self.cfg.sample_rate

    @staticmethod
    def _truncated(container: str, fraction: float | None = None) -> InputError:
        # Never "100 %": a file missing only its last bytes holds 99 % of its audio.
        held = ("it ends partway through" if fraction is None
                else f"it holds only {min(round(100 * fraction), 99)}% of its audio")
        return InputError(f"The {container} file is truncated: {held}. Please give the complete file, or record "
                          "again.")

    def _check_size(self, n: int, rate: int, channels: int) -> None:
        """Refuses, from the header or the array's shape alone, a recording over the budget: the config's
        limits or the library's ceilings, whichever are lower."""
        cfg = self.cfg
        max_rate = min(cfg.max_input_rate, MAX_INPUT_RATE)
        max_s = min(cfg.max_input_s, MAX_INPUT_SECONDS)
        if rate > max_rate:
            raise InputError(f"The sample rate is {rate} Hz; please use {max_rate} Hz or less.")
        if channels > MAX_CHANNELS:
            raise InputError(f"The recording has {channels} channels; please use mono or stereo audio "
                             f"(at most {MAX_CHANNELS}).")
        if n > max_s * rate:
            raise InputError(f"The recording is {n / rate:.1f} s long; please keep it under {max_s:g} s "
                             "(one spoken digit).")
        if n * channels > MAX_INPUT_SAMPLES:
            raise InputError(f"The recording is too much audio to process: {channels} channels x {n / rate:.1f} s "
                             f"at {rate} Hz is {n * channels / 1e6:.0f} M samples, over the "
                             f"{MAX_INPUT_SAMPLES / 1e6:.0f} M this demo reads. A spoken digit needs a few seconds: "
                             "please record in mono (or stereo) at 48000 Hz or less.")
        if n < cfg.min_input_s * rate:
            raise InputError(f"The recording is only {1000 * n / rate:.0f} ms long; please record at least "
                             f"{cfg.min_input_s:g} s.")

    def to_mono(self, samples, rate: int) -> np.ndarray:
        """(samples,) or (samples, channels) at `rate` -> mono float32 at the model's rate, its DC offset
        removed. Read a block at a time, so that no float copy of the whole input is made."""
        rate = _check_rate(rate)
        max_rate = min(self.cfg.max_input_rate, MAX_INPUT_RATE)
        if rate > max_rate:
            raise InputError(f"The sample rate is {rate} Hz; please use {max_rate} Hz or less.")
        samples = _as_array(samples)
        if samples.ndim == 2 and not 1 <= samples.shape[1] <= MAX_CHANNELS:
            raise InputError(f"{SHAPE_HINT}; got shape {samples.shape}.")
        scale = _pcm_scale(samples)
        stream = _MonoStream(rate, self.cfg.sample_rate, len(samples))
        step = max(DECODE_BLOCK_SAMPLES // (samples.shape[1] if samples.ndim == 2 else 1), 1)
        for start in range(0, len(samples), step):
            stream.feed(_scaled(samples[start:start + step], scale))
        return stream.finish()

    def trim(self, wave: np.ndarray) -> tuple[int, int]:
        cfg = self.cfg
        if len(wave) == 0 or np.abs(wave).max() < cfg.silence_peak:
            raise _silent_error()
        frame, hop = cfg.trim_frame, cfg.trim_frame // 4
        n_windows = 1 + -(-max(len(wave) - frame, 0) // hop)
        padded = np.pad(wave, (0, frame + (n_windows - 1) * hop - len(wave)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]
        # Variance, not mean square: clipping makes a DC offset differ between silence and voice. In float64,
        # a few thousand frames at a time: a minute of frames at once is 30 MB of copies.
        db = np.empty(len(frames))
        for lo in range(0, len(frames), TRIM_CHUNK_FRAMES):
            db[lo:lo + TRIM_CHUNK_FRAMES] = 10 * np.log10(
                frames[lo:lo + TRIM_CHUNK_FRAMES].astype(np.float64).var(axis=1) + 1e-20)
        # A noisy microphone can sit within trim_top_db of the voice; then the threshold rises to just above
        # the noise floor, but never closer to the peak than trim_min_range_db.
        floor = np.percentile(db, 10)
        threshold = max(db.max() - cfg.trim_top_db,
                        min(floor + cfg.trim_floor_margin_db, db.max() - cfg.trim_min_range_db))
        voiced = np.flatnonzero(db > threshold)
        # Each loud frame vouches for the hop around its centre only, so a click stays a few ms long.
        start = max(int(voiced[0] * hop + (frame - hop) // 2), 0)
        end = min(int(voiced[-1] * hop + (frame + hop) // 2), len(wave))
        if end - start < cfg.min_voiced_s * cfg.sample_rate:
            raise InputError(
                f"Only {1000 * (end - start) / cfg.sample_rate:.0f} ms of the recording is louder than the background; "
                "please speak the digit clearly and closer to the microphone."
            )
        return start, end

    def normalise(self, wave: np.ndarray) -> np.ndarray:
        """Remove the segment's own DC offset and scale its peak to cfg.target_peak."""
        wave = wave - wave.mean() if len(wave) else wave
        peak = np.abs(wave).max(initial=0.0)
        if peak < self.cfg.silence_peak:
            raise _silent_error()
        return (wave * (self.cfg.target_peak / peak)).astype(np.float32)

    def fix_length(self, wave: np.ndarray, offset: int = 0) -> np.ndarray:
        """Centre `wave` in cfg.num_samples; a positive offset moves it later, never past either edge."""
        n, size = len(wave), self.cfg.num_samples
        out = np.zeros(size, np.float32)
        if n <= size:
            start = int(np.clip((size - n) // 2 + offset, 0, size - n))
            out[start:start + n] = wave
        else:
            start = int(np.clip((n - size) // 2 - offset, 0, n - size))
            out[:] = wave[start:start + size]
        return out

    def log_mel(self, wave) -> np.ndarray:
        x = np.asarray(wave.detach().cpu().numpy() if hasattr(wave, "detach") else wave, np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.cfg.num_samples:
            raise InputError(f"log_mel wants (N,) or (B, N) samples with N = {self.cfg.num_samples}; "
                             f"got {tuple(x.shape)}. Use fix_length first.")
        spec = stft(x, self.cfg.n_fft, self.cfg.hop_length, self.window)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        mel = np.swapaxes(np.swapaxes(power, -1, -2) @ self.filterbank, -1, -2)
        # Row-major, not the product's transposed view: strided log-mels slowed every training step by a
        # tenth (the speech encoder and its likelihood copy them on every call).
        return np.ascontiguousarray(np.log(mel + np.float32(self.cfg.log_floor)), dtype=np.float32)

    def prepare(self, waveform, sample_rate: int) -> PreparedSpeech:
        samples = _as_array(waveform)
        if samples.ndim == 2 and samples.shape[1] > MAX_CHANNELS and samples.shape[0] <= MAX_CHANNELS:
            samples = samples.T  # (channels, samples), as torch code tends to hold it
        if not (samples.ndim == 1 or 1 <= samples.shape[1] <= MAX_CHANNELS):
            raise InputError(f"{SHAPE_HINT}; got shape {samples.shape}.")
        rate = _check_rate(sample_rate)
        self._check_size(len(samples), rate, samples.shape[1] if samples.ndim == 2 else 1)
        return self._prepare_mono(self.to_mono(samples, rate))

    def prepare_bytes(self, data: bytes) -> PreparedSpeech:
        return self._prepare_mono(self.decode(data)[0])

    def _prepare_mono(self, wave: np.ndarray) -> PreparedSpeech:
        """Mono at the model's rate -> the voiced part, level-normalised, centred and as a log-mel."""
        start, end = self.trim(wave)
        voiced = self.normalise(wave[start:end])
        return PreparedSpeech(self.log_mel(self.fix_length(voiced)), wave, voiced, (start, end), self.cfg.sample_rate)

    def waveform_from_log_mel(self, log_mel) -> np.ndarray:
        m = np.asarray(log_mel, np.float32)
        if m.ndim not in (2, 3) or m.shape[-2] != self.cfg.n_mels:
            raise InputError(f"A log-mel must be (n_mels, frames) or (B, n_mels, frames) with n_mels = "
                             f"{self.cfg.n_mels}; got {tuple(m.shape)}.")
        if not np.isfinite(m).all():
            raise InputError("The log-mel contains NaN or infinite values.")
        power = np.maximum(np.exp(np.minimum(m, MAX_LOG_MEL)) - np.float32(self.cfg.log_floor), 0)
        wave = self.griffin_lim(np.maximum(self._unmel @ power, 0))
        peak = np.maximum(np.abs(wave).max(axis=-1, keepdims=True), 1e-8)
        return (wave * (self.cfg.target_peak / peak)).astype(np.float32)

    def griffin_lim(self, power: np.ndarray) -> np.ndarray:
        """A waveform whose STFT power is `power` (..., freqs, frames): fast Griffin-Lim from zero phase, so the
        same log-mel always sounds the same."""
        cfg, window = self.cfg, self.window
        magnitude = np.sqrt(power)
        angles = np.ones(magnitude.shape, np.complex64)
        previous = 0.0
        momentum = GRIFFIN_LIM_MOMENTUM / (1 + GRIFFIN_LIM_MOMENTUM)
        for _ in range(cfg.griffin_lim_iters):
            rebuilt = stft(istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window), cfg.n_fft, cfg.hop_length,
                           window)
            angles = rebuilt - momentum * previous
            angles = angles / (np.abs(angles) + 1e-16)
            previous = rebuilt
        return istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window)


def wav_bytes(waveform: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(waveform, dtype=np.float32), int(sample_rate), subtype=subtype, format="WAV")
    return buf.getvalue()
