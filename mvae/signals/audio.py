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
MAX_LOG_MEL = 30.0  # exp() of a wild decoder output must stay finite
FORMATS = "WAV, FLAC or OGG"
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
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not float(rate).is_integer():
        raise InputError(f"The sample rate must be a whole number of samples per second, not {rate!r}.")
    rate = int(rate)
    if rate < MIN_INPUT_RATE:
        raise InputError(f"The sample rate is {rate} Hz; please record at {MIN_INPUT_RATE} Hz or more "
                         "(8000 Hz or 16000 Hz are typical).")
    return rate


def _wav_shortfall(data: bytes) -> tuple[int, int] | None:
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


def _as_float(samples) -> np.ndarray:
    """Samples as float32 on the [-1, 1) full scale.

    Integer samples are PCM read by their values, not by the width of the array that holds them, so an
    int16 recording kept in an int32 or int64 array (as `np.array` of Python ints makes) is heard at its
    own level instead of 96 dB down:
    - int8 and int16 arrays are PCM of their own width;
    - wider signed arrays are PCM of the narrowest of 16, 24, 32 or 64 bits that holds every sample;
    - unsigned arrays are offset-binary PCM (centred on half the range, as 8-bit WAV is) of the narrowest
      of 8, 16, 24, 32 or 64 bits that holds every sample.
    A genuine 32-bit recording is read on the 32-bit scale unless its peak is under -48 dBFS; then it is
    read louder, which matters only to the silence check, as the front end normalises the level itself.
    """
    if hasattr(samples, "detach"):  # a torch tensor, as torch code tends to hold audio
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.dtype.kind == "u":
        half = 2.0 ** (_pcm_bits(samples, (8, 16, 24, 32, 64)) - 1)
        return ((samples.astype(np.float64) - half) / half).astype(np.float32)
    if samples.dtype.kind == "i":
        widths = (8 * samples.dtype.itemsize,) if samples.dtype.itemsize <= 2 else (16, 24, 32, 64)
        return (samples / 2.0 ** (_pcm_bits(samples, widths) - 1)).astype(np.float32)
    if samples.dtype.kind != "f":
        raise InputError(f"Audio samples must be numbers (integer or float PCM), not {samples.dtype}.")
    return samples.astype(np.float32, copy=False)


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
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"Audio must be given as file bytes ({FORMATS}), not {type(data).__name__}.")
        if len(data) == 0:
            raise InputError("There is no recording: the audio is empty. Record or upload a spoken digit.")
        try:
            info = sf.info(io.BytesIO(data))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"These bytes are not readable audio; please give a {FORMATS} file.") from exc
        if info.frames <= 0:
            raise InputError("There is no recording: the audio file holds no samples. Record or upload a spoken digit.")
        shortfall = _wav_shortfall(bytes(data))
        if shortfall:
            raise InputError(f"The WAV file is truncated: it holds only {shortfall[0] / shortfall[1]:.0%} of its "
                             "audio. "
                             "Please give the complete file, or record again.")
        self._check_size(info.frames, info.samplerate, info.channels)
        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"The audio file is damaged or truncated; please give a complete {FORMATS} file.") from exc
        return samples, rate

    def _check_size(self, n: int, rate: int, channels: int) -> None:
        cfg = self.cfg
        if rate > cfg.max_input_rate:
            raise InputError(f"The sample rate is {rate} Hz; please use {cfg.max_input_rate} Hz or less.")
        if channels > MAX_CHANNELS:
            raise InputError(f"The recording has {channels} channels; please use mono or stereo audio "
                             f"(at most {MAX_CHANNELS}).")
        if n > cfg.max_input_s * rate:
            raise InputError(f"The recording is {n / rate:.1f} s long; please keep it under {cfg.max_input_s:g} s "
                             "(one spoken digit).")
        if n < cfg.min_input_s * rate:
            raise InputError(f"The recording is only {1000 * n / rate:.0f} ms long; please record at least "
                             f"{cfg.min_input_s:g} s.")

    def to_mono(self, samples: np.ndarray, rate: int) -> np.ndarray:
        rate = _check_rate(rate)
        if rate > self.cfg.max_input_rate:
            raise InputError(f"The sample rate is {rate} Hz; please use {self.cfg.max_input_rate} Hz or less.")
        samples = _as_float(samples)
        if not np.isfinite(samples).all():
            raise InputError("The audio contains NaN or infinite samples; please give a valid recording.")
        wave = samples.mean(axis=1) if samples.ndim == 2 else samples
        wave = resample(wave - wave.mean(), Fraction(self.cfg.sample_rate, rate))
        return np.asarray(wave, dtype=np.float32)

    def trim(self, wave: np.ndarray) -> tuple[int, int]:
        cfg = self.cfg
        if len(wave) == 0 or np.abs(wave).max() < cfg.silence_peak:
            raise _silent_error()
        frame, hop = cfg.trim_frame, cfg.trim_frame // 4
        n_windows = 1 + -(-max(len(wave) - frame, 0) // hop)
        padded = np.pad(wave, (0, frame + (n_windows - 1) * hop - len(wave)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]
        # Variance, not mean square: clipping makes a DC offset differ between silence and voice.
        db = 10 * np.log10(frames.astype(np.float64).var(axis=1) + 1e-20)
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

    def prepare(self, waveform: np.ndarray, sample_rate: int) -> PreparedSpeech:
        samples = _as_float(waveform)
        if samples.ndim == 2 and samples.shape[1] > MAX_CHANNELS and samples.shape[0] <= MAX_CHANNELS:
            samples = samples.T  # (channels, samples), as torch code tends to hold it
        if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] > MAX_CHANNELS):
            raise InputError(f"A waveform must be (samples,) or (samples, channels) with at most {MAX_CHANNELS} "
                             f"channels; got shape {samples.shape}.")
        rate = _check_rate(sample_rate)
        self._check_size(len(samples), rate, samples.shape[1] if samples.ndim == 2 else 1)
        wave = self.to_mono(samples, rate)
        start, end = self.trim(wave)
        voiced = self.normalise(wave[start:end])
        return PreparedSpeech(self.log_mel(self.fix_length(voiced)), wave, voiced, (start, end), self.cfg.sample_rate)

    def prepare_bytes(self, data: bytes) -> PreparedSpeech:
        return self.prepare(*self.decode(data))

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

    def change_speed_pitch(self, wave: np.ndarray, speed: float = 1.0, semitones: float = 0.0) -> np.ndarray:
        """Training-time (needs torch): `wave` played `speed` times faster, its pitch shifted by `semitones`."""
        from .augment import change_speed_pitch

        return change_speed_pitch(wave, speed, semitones)

    def augment(self, wave: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
        """Training-time (needs torch): a plausible new speaker and room; strength=0 is the identity."""
        from .augment import augment_speech

        return augment_speech(self.cfg, wave, rng, strength)


def wav_bytes(waveform: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(waveform, dtype=np.float32), int(sample_rate), subtype=subtype, format="WAV")
    return buf.getvalue()
