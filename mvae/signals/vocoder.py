"""A log-mel back to a waveform that can be heard: the inverse mel filterbank, then fast Griffin-Lim from zero
phase, as torchaudio's `InverseMelScale` and `GriffinLim` have them, in numpy (tests hold them to
torchaudio's results)."""

from __future__ import annotations

import numpy as np

from ..config import AudioConfig
from ..errors import InputError
from .spectral import istft, stft

GRIFFIN_LIM_MOMENTUM = 0.99  # torchaudio's default: "fast" Griffin-Lim
MAX_LOG_MEL = 30.0  # exp() of a wild decoder output must stay finite


def inverse_filterbank(filterbank: np.ndarray) -> np.ndarray:
    """(freqs, mels): the least-squares, least-norm inverse of the filterbank, as InverseMelScale's."""
    return np.linalg.pinv(filterbank.T.astype(np.float64)).astype(np.float32)


def waveform_from_log_mel(log_mel, cfg: AudioConfig, unmel: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(n_mels, frames) or (B, n_mels, frames) log-mels -> waveforms peaking at cfg.target_peak; `unmel` is
    `inverse_filterbank` of the front end's filterbank."""
    m = np.asarray(log_mel, np.float32)
    if m.ndim not in (2, 3) or m.shape[-2] != cfg.n_mels:
        raise InputError(f"A log-mel must be (n_mels, frames) or (B, n_mels, frames) with n_mels = "
                         f"{cfg.n_mels}; got {tuple(m.shape)}.")
    if not np.isfinite(m).all():
        raise InputError("The log-mel contains NaN or infinite values.")
    power = np.maximum(np.exp(np.minimum(m, MAX_LOG_MEL)) - np.float32(cfg.log_floor), 0)
    wave = griffin_lim(np.maximum(unmel @ power, 0), cfg, window)
    peak = np.maximum(np.abs(wave).max(axis=-1, keepdims=True), 1e-8)
    return (wave * (cfg.target_peak / peak)).astype(np.float32)


def griffin_lim(power: np.ndarray, cfg: AudioConfig, window: np.ndarray) -> np.ndarray:
    """A waveform whose STFT power is `power` (..., freqs, frames): fast Griffin-Lim from zero phase, so the
    same log-mel always sounds the same."""
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
