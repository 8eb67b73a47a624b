"""Spectrograms in numpy: the HTK mel filterbank, the periodic Hann window, and the centred STFT and its
inverse, as torchaudio's `MelSpectrogram` and torch.stft/istft have them (tests hold them to torch's results),
so that the app runs without torch and in the browser (Pyodide has numpy)."""

from __future__ import annotations

import functools

import numpy as np

from ..config import AudioConfig


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


def hann(n: int) -> np.ndarray:
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

