"""Stand-ins for real users: test digits drawn the ways people draw, test recordings heard the ways
microphones hear them, each read through the same front end as the app's inputs.

They are not held-out users (the FSDD test split has the training speakers' voices, and the digits are
the test splits' own), so they measure the front end and the augmentation, not new people.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageFilter

from ..data.banks import spread
from ..data.paired import Bank
from ..data.sources import load_images, recordings
from ..errors import InputError
from ..kinds import IMAGES, SPEECH, kind
from ..model.model import MVAE
from ..signals.audio import AudioFrontEnd
from ..signals.augment import change_speed_pitch
from ..signals.images import prepare_digit
from ..signals.resampling import resample
from .metrics import unimodal_accuracy

CANVAS = 280


@dataclass(frozen=True)
class Drawing:
    """How a digit lands on the 280x280 canvas: its height in px, width / height, and pen dilation."""
    height: int
    aspect: float = 1.0
    pen: int = 0  # size of the max filter that thickens the strokes (odd, 0 for none)


DRAWINGS = {
    "large, off-centre": Drawing(height=230),
    "small": Drawing(height=60),
    "thick pen": Drawing(height=180, pen=15),
    "wide": Drawing(height=150, aspect=1.6),
    "narrow": Drawing(height=200, aspect=0.6),
}


@dataclass(frozen=True)
class Hearing:
    """How a recording reaches the model: sample rate, channels, level, noise, surrounding silence, voice."""
    rate: int = 8000
    channels: int = 1
    gain_db: float = 0.0
    snr_db: float | None = None
    padding_s: float = 0.0
    semitones: float = 0.0


HEARINGS = {
    "16 kHz": Hearing(rate=16_000),
    "48 kHz stereo": Hearing(rate=48_000, channels=2),
    "noisy room (10 dB SNR)": Hearing(rate=44_100, snr_db=10.0),
    "quiet (-20 dB), 1 s of room tone around": Hearing(gain_db=-20.0, padding_s=1.0, snr_db=30.0),
    "lower voice (-4 semitones)": Hearing(rate=16_000, semitones=-4.0),
    "higher voice (+4 semitones)": Hearing(rate=16_000, semitones=4.0),
}


def draw(digit: np.ndarray, style: Drawing, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 digit redrawn on a transparent RGBA canvas at a random place, the ink in alpha."""
    ys, xs = np.nonzero(digit > 0)
    crop = digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h = style.height
    w = max(1, min(CANVAS - 2, round(h * crop.shape[1] / crop.shape[0] * style.aspect)))
    ink = Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR)
    if style.pen:
        ink = ink.filter(ImageFilter.MaxFilter(style.pen))
    canvas = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    top, left = rng.integers(0, CANVAS - h + 1), rng.integers(0, CANVAS - w + 1)
    canvas[top:top + h, left:left + w, 3] = np.asarray(ink)
    return canvas


def hear(wave: np.ndarray, rate: int, front_end: AudioFrontEnd, style: Hearing,
         rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A recording as another microphone, room or voice would deliver it: (samples[, channels]), rate."""
    if style.semitones:
        wave = change_speed_pitch(wave, 1.0, style.semitones)
    wave = np.asarray(wave, np.float64) * 10 ** (style.gain_db / 20)
    voice_rms = np.sqrt(np.mean(wave ** 2))
    pad = np.zeros(int(style.padding_s * rate))
    wave = np.concatenate([pad, wave, pad])
    if style.snr_db is not None:  # room noise, in the silence around the digit as well
        wave = wave + voice_rms * 10 ** (-style.snr_db / 20) * rng.standard_normal(len(wave))
    if style.rate != rate:
        wave = resample(wave, Fraction(style.rate, rate))
    if style.channels > 1:
        wave = np.stack([wave * (0.9 ** c) for c in range(style.channels)], axis=1)
    return np.asarray(wave, np.float32), style.rate


def drawn(model: MVAE, name: str, data_dir, per_script: int, rng: np.random.Generator) -> dict[str, float]:
    """Label accuracy on an image modality's test digits redrawn in every drawing style."""
    test = load_images(data_dir, name, "test")
    rows = spread(len(test.labels), per_script)
    scores = {}
    for style_name, style in DRAWINGS.items():
        made = torch.stack([torch.from_numpy(prepare_digit(draw(test.images[r], style, rng))) for r in rows])
        scores[f"{name} drawn {style_name}"] = unimodal_accuracy(model, name, Bank(made, test.labels[rows]))
    return scores


def heard(model: MVAE, name: str, data_dir, per_script: int, rng: np.random.Generator) -> dict[str, float]:
    """Label accuracy on every test recording of a recorded modality in every way of hearing it; a recording
    the front end refuses counts as wrong."""
    front_end = AudioFrontEnd(model.cfg.audio)
    found = recordings(data_dir, name, "test")
    labels = np.array([r.digit for r in found])
    sounds = [sf.read(r.path, dtype="float32") for r in found]
    scores = {}
    for style_name, style in HEARINGS.items():
        inputs, kept = [], []
        for i, (wave, rate) in enumerate(sounds):
            try:
                inputs.append(front_end.prepare(*hear(wave, rate, front_end, style, rng)).log_mel)
                kept.append(i)
            except InputError:  # refused as silent or too short: the user sees an error, not a digit
                pass
        right = unimodal_accuracy(model, name, Bank(torch.from_numpy(np.stack(inputs)), labels[kept])) \
            if kept else 0.0
        scores[f"{name} heard {style_name}"] = right * len(kept) / len(sounds)
    return scores


# The stand-ins of each kind of input; a kind without any has none.
STAND_INS = {IMAGES: drawn, SPEECH: heard}


def robustness(model: MVAE, data_dir, per_script: int = 1000, seed: int = 0) -> dict[str, float]:
    """Label accuracy for every drawing style of each script and every way of hearing each recorded test split,
    modality by modality (one random stream through them all, in the model's order)."""
    rng = np.random.default_rng(seed)
    scores = {}
    for name in model.input_names:
        stand_in = STAND_INS.get(kind(name))
        if stand_in is not None:
            scores |= stand_in(model, name, data_dir, per_script, rng)
    return scores
