"""Training-time augmentation, in torch: geometric variation of digit images (shared by the MVAE's training
and by the judges) and a new speaker and room for speech.

It lives apart from training so that the judges, which must stay independent of the model, need not
import the training loop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from ..config import AudioConfig
from .resampling import resample


def augment_images(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, size, aspect ratio, slant, shift and stroke width, like the variety of drawn digits.

    People draw digits wider or narrower than the long-side-fitted training sets: Dig-MNIST's are about
    a third wider for their height than Kannada-MNIST's. At strength 1 the aspect ratio varies by up to
    1.5x each way.
    """
    if strength <= 0:
        return images
    n = images.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    angle = u(n) * math.radians(12) * strength
    log_scale = u(n) * 0.12 * strength
    log_aspect = u(n) * 0.2 * strength
    shear = u(n) * 0.15 * strength
    shift = u(n, 2) * 0.12 * strength
    # theta maps output coordinates to input ones, so it is the inverse of the wanted distortion.
    sx, sy = torch.exp(-(log_scale + log_aspect)), torch.exp(-(log_scale - log_aspect))
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = cos * sx, (cos * shear - sin) * sx
    c, d = sin * sy, (sin * shear + cos) * sy
    theta = torch.stack([torch.stack([a, b, shift[:, 0]], 1), torch.stack([c, d, shift[:, 1]], 1)], 1)
    x = images.unsqueeze(1)
    grid = F.affine_grid(theta.to(x), x.shape, align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    stroke = torch.rand(n, generator=generator)
    thicker = (stroke < 0.3 * strength).to(x)[:, None, None, None]
    thinner = (stroke > 1 - 0.1 * strength).to(x)[:, None, None, None]
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = thicker * dilated + thinner * eroded + (1 - thicker - thinner) * x
    return x.squeeze(1).clamp(0, 1)


# Phase-vocoder STFT for pitch shifting: 32 ms windows at 8 kHz resolve the pitch harmonics of speech.
STRETCH_FFT = 256
STRETCH_HOP = 64


def change_speed_pitch(wave: np.ndarray, speed: float = 1.0, semitones: float = 0.0) -> np.ndarray:
    """Play `wave` `speed` times faster (shorter and higher, like tape) and shift its pitch by `semitones`.

    The pitch shift is a phase-vocoder time stretch by the pitch factor; one resampling then undoes that
    stretch and applies the speed change together.
    """
    pitch = 2.0 ** (semitones / 12)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if pitch != 1.0:
        window = torch.hann_window(STRETCH_FFT)
        spec = torch.stft(x, STRETCH_FFT, STRETCH_HOP, window=window, return_complex=True)
        advance = torch.linspace(0, torch.pi * STRETCH_HOP, spec.shape[-2])[:, None]
        spec = torchaudio.functional.phase_vocoder(spec, 1 / pitch, advance)
        x = torch.istft(spec, STRETCH_FFT, STRETCH_HOP, window=window, length=round(len(x) * pitch))
    return resample(x.numpy(), 1 / (pitch * speed))


def augment_speech(cfg: AudioConfig, wave: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A plausible new speaker and room: speed, pitch, additive noise and level. strength=0 is the identity."""
    return augment_speech_warped(cfg, wave, rng, strength)[0]


def augment_speech_warped(cfg: AudioConfig, wave: np.ndarray, rng: np.random.Generator,
                          strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(`augment_speech`'s copy, the same copy before its noise and level change), from the same draws: the
    second is what a decoder can be asked to reconstruct from the first, its speed and pitch being there to
    hear and its noise being of no voice."""
    speed = 1 + rng.uniform(-cfg.aug_speed, cfg.aug_speed) * strength
    semitones = rng.uniform(-cfg.aug_pitch_semitones, cfg.aug_pitch_semitones) * strength
    snr_db = rng.uniform(*cfg.aug_snr_db)
    gain_db = rng.uniform(-cfg.aug_gain_db, cfg.aug_gain_db) * strength
    warped = change_speed_pitch(wave, speed, semitones)
    noise_rms = strength * np.sqrt(np.mean(warped.astype(np.float64) ** 2)) * 10 ** (-snr_db / 20)
    noisy = warped + noise_rms * rng.standard_normal(len(warped))
    return (noisy * 10 ** (gain_db / 20)).astype(np.float32), np.asarray(warped, dtype=np.float32)
