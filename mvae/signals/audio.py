"""Speech front end shared by data preparation, training and the app, in numpy alone (no torch, no scipy).

Every recording, whether an FSDD file or a browser microphone take, goes through `AudioFrontEnd.prepare`:
mix to mono and resample to 8 kHz (`waveform`, or `recording` for file bytes), trim the silence around the
voice, normalise the peak, centre it in a fixed-length window and take the log-mel spectrogram
(`spectral`). `waveform_from_log_mel` goes back the other way (`vocoder`) so that a decoded log-mel can be
heard.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from ..config import AudioConfig
from ..errors import InputError
from . import vocoder
from .recording import check_size, decode
from .spectral import hann, mel_filterbank, stft
from .waveform import MAX_CHANNELS, SHAPE_HINT, as_array, check_rate, to_mono

TRIM_CHUNK_FRAMES = 1024


@dataclass
class PreparedSpeech:
    log_mel: np.ndarray  # (n_mels, n_frames) float32: natural log of mel power + log_floor
    waveform: np.ndarray  # the whole input, mono at sample_rate
    voiced: np.ndarray  # the trimmed, level-normalised segment the log-mel was taken from
    span: tuple[int, int]  # start/end sample of the voiced segment within `waveform`
    sample_rate: int


def _silent_error() -> InputError:
    return InputError("The recording is silent: check that the microphone is on and not muted, then speak a digit.")


class AudioFrontEnd:
    def __init__(self, cfg: AudioConfig):
        self.cfg = cfg
        self.filterbank = mel_filterbank(cfg)  # (freqs, mels)
        self.window = hann(cfg.n_fft)

    @functools.cached_property
    def _unmel(self) -> np.ndarray:
        """(freqs, mels): the inverse of the filterbank, made on first use (only playback needs it)."""
        return vocoder.inverse_filterbank(self.filterbank)

    def decode(self, data: bytes) -> tuple[np.ndarray, int]:
        """File bytes -> (the recording as mono float32 at the model's rate, that rate): `recording.decode`."""
        return decode(data, self.cfg), self.cfg.sample_rate

    def to_mono(self, samples, rate: int) -> np.ndarray:
        """(samples,) or (samples, channels) at `rate` -> mono float32 at the model's rate, its DC offset
        removed: `waveform.to_mono`."""
        return to_mono(samples, rate, self.cfg)

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
        samples = as_array(waveform)
        if samples.ndim == 2 and samples.shape[1] > MAX_CHANNELS and samples.shape[0] <= MAX_CHANNELS:
            samples = samples.T  # (channels, samples), as torch code tends to hold it
        if not (samples.ndim == 1 or 1 <= samples.shape[1] <= MAX_CHANNELS):
            raise InputError(f"{SHAPE_HINT}; got shape {samples.shape}.")
        rate = check_rate(sample_rate)
        check_size(self.cfg, len(samples), rate, samples.shape[1] if samples.ndim == 2 else 1)
        return self._prepare_mono(self.to_mono(samples, rate))

    def prepare_bytes(self, data: bytes) -> PreparedSpeech:
        return self._prepare_mono(self.decode(data)[0])

    def _prepare_mono(self, wave: np.ndarray) -> PreparedSpeech:
        """Mono at the model's rate -> the voiced part, level-normalised, centred and as a log-mel."""
        start, end = self.trim(wave)
        voiced = self.normalise(wave[start:end])
        return PreparedSpeech(self.log_mel(self.fix_length(voiced)), wave, voiced, (start, end), self.cfg.sample_rate)

    def waveform_from_log_mel(self, log_mel) -> np.ndarray:
        return vocoder.waveform_from_log_mel(log_mel, self.cfg, self._unmel, self.window)

    def griffin_lim(self, power: np.ndarray) -> np.ndarray:
        """A waveform whose STFT power is `power` (..., freqs, frames): `vocoder.griffin_lim`."""
        return vocoder.griffin_lim(power, self.cfg, self.window)


def wav_bytes(waveform: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(waveform, dtype=np.float32), int(sample_rate), subtype=subtype, format="WAV")
    return buf.getvalue()
