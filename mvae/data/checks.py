"""Up-front checks of a prepared dataset, so that a damaged file stops a run within seconds, before
minutes of feature extraction or training, with a DataError that names the file."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import soundfile as sf

from ..config import AudioConfig
from ..errors import DataError
from ..kinds import IMAGES, SPEECH, kind
from ..signals.recording import wav_shortfall
from ..signals.waveform import MAX_CHANNELS, MIN_INPUT_RATE
from .sources import Recording, load_images, prepare_again, read_regular, recordings

# Recordings already found sound in this process, keyed by (path, size, mtime): the up-front check and
# the speech bank that follows it read each file once more between them, not twice.
_sound: set[tuple[str, int, int]] = set()


def _problem(path: Path, cfg: AudioConfig) -> str | None:
    """What makes one recording unusable for training, in words, or None."""
    try:
        data = read_regular(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not data:
        return "is empty (0 bytes)"
    try:  # decoded from the bytes read, so that what is checked is what was read
        info = sf.info(io.BytesIO(data))
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError) as exc:
        return f"is damaged or is not audio ({exc})"
    shortfall = wav_shortfall(data)
    if shortfall:
        return f"is truncated: it holds {shortfall[0]:,} of the {shortfall[1]:,} bytes of audio its header declares"
    if len(samples) == 0:
        return "holds no samples"
    if not MIN_INPUT_RATE <= rate <= cfg.max_input_rate:
        return f"has a sample rate of {rate} Hz, outside {MIN_INPUT_RATE}-{cfg.max_input_rate} Hz"
    if info.channels > MAX_CHANNELS:
        return f"has {info.channels} channels (at most {MAX_CHANNELS})"
    seconds = len(samples) / rate
    if not cfg.min_input_s <= seconds <= cfg.max_input_s:
        return f"lasts {seconds:.3f} s, outside {cfg.min_input_s:g}-{cfg.max_input_s:g} s"
    if not np.isfinite(samples).all():
        return "holds NaN or infinite samples"
    peak = float(np.abs(samples - samples.mean(axis=0)).max())
    if peak < cfg.silence_peak:
        return f"is silent: its loudest sample is {peak:.2g} of full scale"
    return None


def recording_error(path: Path, data_dir: Path | None, what: str, name: str) -> DataError:
    """A bad recording of modality `name`, with what to do about it."""
    data_dir = data_dir if data_dir is not None else Path(path).parents[2]  # DIR/<folder>/recordings/<file>
    return DataError(f"The recording {path} {what}. Delete it, or replace the whole set. "
                     f"{prepare_again(data_dir, name)}")


def check_recordings(found: list[Recording], cfg: AudioConfig, data_dir, name: str) -> None:
    """Every recording decodable, whole and not silent; else a DataError naming the first bad file."""
    for rec in found:
        try:
            info = os.stat(rec.path)
        except OSError as exc:
            raise recording_error(rec.path, data_dir, f"cannot be read ({exc.strerror})", name) from exc
        if not stat.S_ISREG(info.st_mode):
            # Never opened: reading a named pipe would wait for a writer, and the run with it.
            raise recording_error(rec.path, data_dir, "is not a regular file (a named pipe, a folder or a device)",
                                  name)
        key = (str(rec.path), info.st_size, info.st_mtime_ns)
        if key in _sound:
            continue
        problem = _problem(Path(rec.path), cfg)
        if problem:
            raise recording_error(rec.path, data_dir, problem, name)
        _sound.add(key)


def _check_images(data_dir: Path, name: str, split: str, audio: AudioConfig) -> None:
    load_images(data_dir, name, split)


def _check_speech(data_dir: Path, name: str, split: str, audio: AudioConfig) -> None:
    check_recordings(recordings(data_dir, name, split), audio, data_dir, name)


# How the files of each kind are checked, looked up here so that the kinds, below the data, need not know;
# a label has no files of its own.
CHECKS = {IMAGES: _check_images, SPEECH: _check_speech}


def check_dataset(data_dir, modalities, splits=("train", "test"), audio: AudioConfig | None = None) -> None:
    """Reads every file a run will use, before any of it is used; raises DataError naming a bad file."""
    for split in splits:
        for name in modalities:
            check = CHECKS.get(kind(name))
            if check is not None:
                check(Path(data_dir), name, split, audio or AudioConfig())
