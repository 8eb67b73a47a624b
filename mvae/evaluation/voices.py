"""Spoken digits in synthetic voices, for a speech judge that never heard FSDD.

espeak-ng (a Debian package) speaks each digit word in its English voices, each with its variants, at
many speeds and pitches; every utterance then goes through a room (a decaying-noise impulse response),
additive noise and a gain, and the project's front end (trim, level, centring, log-mel), as a recording
does. Nothing here reads a data folder: the synthetic set cannot contain FSDD or anything a model made.

A *voice* is one English voice with one variant (`en-gb-scotland+m3`). Whole voices are held out, by
variant: no held-out variant is heard in training with any English voice.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..data.paired import Bank
from ..errors import DataError, InputError
from ..signals.audio import AudioFrontEnd

ESPEAK = "espeak-ng"
MISSING = "install espeak-ng (Debian: apt-get install espeak-ng)"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# MBROLA voices need voice files Debian's espeak-ng does not carry; without them espeak-ng falls back or fails.
MBROLA_PREFIX = "mb/"
VARIANT_PREFIX = "!v/"
ESPEAK_TIMEOUT_S = 30
LOG_MEL_CHUNK = 512  # waveforms per log-mel call: bounds the STFT's memory


@dataclass(frozen=True)
class VoiceSettings:
    """The ranges a synthetic utterance is drawn from (uniform unless said otherwise)."""
    speed_wpm: tuple[int, int] = (90, 260)  # espeak-ng's -s; its default is 175
    pitch: tuple[int, int] = (10, 90)  # espeak-ng's -p, 0-99; its default is 50
    rt60_s: tuple[float, float] = (0.05, 0.6)  # reverberation time of the room
    room_share: float = 0.7  # the share of utterances heard in a room
    snr_db: tuple[float, float] = (10.0, 45.0)  # noise below the voice
    gain_db: float = 12.0  # +- this, before the front end levels the utterance
    shift_frames: int = 8  # the word's place in the window, +- this many hops
    held_out_every: int = 5  # every fifth variant (by sorted name) is held out
    workers: int = 4  # espeak-ng processes at once (they mostly wait on their pipes)


SETTINGS = VoiceSettings()


def espeak() -> str:
    """The espeak-ng executable, or a one-line DataError saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise DataError(MISSING)
    return path


def _listing(argument: str) -> list[list[str]]:
    out = subprocess.run([espeak(), argument], capture_output=True, text=True, check=True,
                         timeout=ESPEAK_TIMEOUT_S).stdout
    return [re.split(r"\s+", line.strip()) for line in out.splitlines()[1:] if line.strip()]


def english_voices() -> list[str]:
    """espeak-ng's English voices that need nothing beyond espeak-ng itself (no MBROLA), by language name."""
    rows = _listing("--voices=en")
    # Columns: priority, language, age/gender, name, file, other languages.
    return sorted({row[1] for row in rows if len(row) >= 5 and not row[4].startswith((MBROLA_PREFIX, VARIANT_PREFIX))})


def variants() -> list[str]:
    """espeak-ng's voice variants (`m3`, `f2`, `Storm`, ...), by the name `-v voice+variant` takes."""
    rows = _listing("--voices=variant")
    return sorted({row[4][len(VARIANT_PREFIX):] for row in rows if len(row) >= 5 and row[4].startswith(VARIANT_PREFIX)})


def split_variants(names: list[str], every: int = SETTINGS.held_out_every) -> tuple[list[str], list[str]]:
    """(training variants, held-out variants): every `every`-th of the sorted names is held out."""
    names = sorted(names)
    return [n for i, n in enumerate(names) if i % every], [n for i, n in enumerate(names) if not i % every]


@dataclass(frozen=True)
class Utterance:
    digit: int
    voice: str  # espeak-ng's -v argument: language+variant
    speed: int
    pitch: int
    seed: int  # of the room, noise, gain and placement


def speak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng saying `word`: (float32 samples, their rate)."""
    try:
        done = subprocess.run([espeak(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                              capture_output=True, check=True, timeout=ESPEAK_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        raise DataError(f"espeak-ng could not speak {word!r} as {voice}: {exc.stderr.decode(errors='replace')}") \
            from exc
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    return samples, rate


def room(wave: np.ndarray, rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """`wave` heard in a room: convolved with exponentially decaying noise that falls 60 dB in rt60_s,
    the direct sound first."""
    n = max(int(rt60_s * rate), 1)
    t = np.arange(n) / rate
    response = rng.standard_normal(n) * 10 ** (-3 * t / rt60_s)  # -60 dB at rt60_s
    response[0] = 1.0
    wet = np.convolve(wave, response)[:len(wave) + n // 2]
    return (wet / np.abs(wet).max(initial=1e-8) * np.abs(wave).max(initial=0.0)).astype(np.float32)


def render(utterance: Utterance, front_end: AudioFrontEnd, settings: VoiceSettings = SETTINGS,
           samples: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """One utterance as the front end hears it: spoken, in its room, noise and gain, trimmed, levelled and
    placed in the window (cfg.num_samples). `samples` skips the call to espeak-ng."""
    rng = np.random.default_rng(utterance.seed)
    samples, rate = samples if samples is not None else speak(DIGIT_WORDS[utterance.digit], utterance.voice,
                                                               utterance.speed, utterance.pitch)
    wave = front_end.to_mono(samples, rate)
    start, end = front_end.trim(wave)
    wave = wave[start:end]
    cfg = front_end.cfg
    if rng.random() < settings.room_share:
        wave = room(wave, cfg.sample_rate, rng.uniform(*settings.rt60_s), rng)
    rms = np.sqrt(np.mean(wave.astype(np.float64) ** 2))
    wave = wave + rms * 10 ** (-rng.uniform(*settings.snr_db) / 20) * rng.standard_normal(len(wave))
    wave = (wave * 10 ** (rng.uniform(-settings.gain_db, settings.gain_db) / 20)).astype(np.float32)
    shift = settings.shift_frames * cfg.hop_length
    return front_end.fix_length(front_end.normalise(wave), int(rng.integers(-shift, shift + 1)))


def utterances(voices: list[str], variant_names: list[str], renditions: int, seed: int,
               settings: VoiceSettings = SETTINGS) -> list[Utterance]:
    """Each digit `renditions` times in every voice (English voice x variant), each at its own speed and pitch."""
    rng = np.random.default_rng([seed, 11])
    out = []
    for voice in voices:
        for variant in variant_names:
            for digit in range(len(DIGIT_WORDS)):
                for _ in range(renditions):
                    speed = int(rng.integers(*settings.speed_wpm, endpoint=True))
                    pitch = int(rng.integers(*settings.pitch, endpoint=True))
                    out.append(Utterance(digit, f"{voice}+{variant}", speed, pitch, int(rng.integers(2**31))))
    return out


def synthetic_bank(items: list[Utterance], front_end: AudioFrontEnd, settings: VoiceSettings = SETTINGS,
                   progress: bool = True) -> Bank:
    """The log-mels of the utterances (in order) and their digits. Takes no data folder, by design."""
    def one(u: Utterance) -> np.ndarray:
        try:
            return render(u, front_end, settings)
        except InputError as exc:  # a voice that says nothing audible is a broken install, not a skip
            raise DataError(f"espeak-ng's {u.voice} gave no usable audio for {DIGIT_WORDS[u.digit]!r}: {exc}") from exc

    with ThreadPoolExecutor(settings.workers) as pool:
        waves = list(tqdm(pool.map(one, items), total=len(items), desc="synthetic voices", disable=not progress,
                          leave=False))
    log_mels = np.concatenate([front_end.log_mel(np.stack(waves[i:i + LOG_MEL_CHUNK]))
                               for i in range(0, len(waves), LOG_MEL_CHUNK)])
    return Bank(torch.from_numpy(log_mels), np.asarray([u.digit for u in items], np.int64))
