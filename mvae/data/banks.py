"""Builds a bank of one modality's split from the prepared data, in the model's input space.

Which builder serves a modality is for its kind to say (`mvae.kinds`): `load_banks` looks the kind up in
BUILDERS, here, so that the kinds, below the data, need not know how their files are read."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from ..config import to_dict
from ..errors import InputError
from ..kinds import IMAGES, SPEECH, kind
from ..signals.audio import AudioFrontEnd
from ..signals.augment import augment_speech_warped
from .cache import BankCache, cache_key, recordings_fingerprint
from .checks import check_recordings, recording_error
from .paired import Bank
from .sources import load_images, read_regular, recordings


def spread(n: int, limit: int | None) -> np.ndarray:
    """`limit` evenly spaced indices out of n (all of them when limit is None), so a slice keeps every class."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def image_bank(data_dir, name: str, split: str, limit: int | None = None) -> Bank:
    data = load_images(data_dir, name, split)
    keep = spread(len(data.labels), limit)
    return Bank(torch.from_numpy(data.images[keep]).float().div_(255.0), data.labels[keep])


def useful_copies(asked: int, draws: int, recordings: int) -> int:
    """How many of the `asked` augmented copies of each recording a run can use. A run draws `draws` items
    (pairs_per_epoch x epochs, with replacement) from a bank of `recordings` recordings, so each comes up
    about draws / recordings times: versions of it (the original and its copies) beyond that number are
    mostly never drawn, and on a CPU each copy costs more than reading the recording."""
    return min(asked, max(0, math.ceil(draws / max(recordings, 1)) - 1))


def recording_bank(data_dir, name: str, split: str, front_end: AudioFrontEnd, aug_copies: int = 0,
                   aug_strength: float = 1.0, seed: int = 0, progress: bool = True, limit: int | None = None,
                   cache: BankCache | None = None, warped_targets: bool = False) -> Bank:
    """Log-mels of every recording of a recorded modality's split, plus `aug_copies` augmented versions of each.
    With `warped_targets` the bank also holds, as each copy's target, the copy before its noise and level
    change (Bank.targets).

    The augmented copies are made once, here, because a pitch or speed change per batch would cost
    more than the whole model step on a CPU. With a `cache`, the making is announced in one line, and the
    bank is read from, or written to, its folder (mvae.data.cache), so that a second run skips it.
    """
    found = recordings(data_dir, name, split)
    found = [found[i] for i in spread(len(found), limit)]
    check_recordings(found, front_end.cfg, Path(data_dir), name)
    if cache is not None and cache.draws is not None and aug_copies:
        asked, aug_copies = aug_copies, useful_copies(aug_copies, cache.draws, len(found))
        if aug_copies < asked:
            cache.say(f"{name} {split}: {aug_copies} augmented cop{'y' if aug_copies == 1 else 'ies'} of each "
                      f"recording, not {asked}: the run draws {cache.draws:,} items from {len(found):,} "
                      "recordings, so more copies would go unseen")
    copies = f" and {aug_copies} augmented cop{'y' if aug_copies == 1 else 'ies'} of each" if aug_copies else ""
    what = f"{name} {split}: {len(found):,} recordings{copies}"
    # The file's name is the modality's and the split's, the key what the bank is made of (not the name: the
    # shipped speech bank keeps the key, and so the cache, it had before there was a registry).
    stored_as = f"{name}{split}"
    key = None
    keep_targets = warped_targets and aug_copies > 0
    if cache is not None:
        cfg = front_end.cfg
        # A bank without targets keeps the key it had before there were any.
        warped = {"warped_targets": True} if keep_targets else {}
        key = cache_key({"split": split, "audio": to_dict(cfg), "copies": aug_copies, "strength": aug_strength,
                         "seed": seed, "recordings": recordings_fingerprint([r.path for r in found],
                                                                            Path(data_dir)), **warped})
        # The labels a bank of these recordings holds, in order: a cached file must hold exactly these.
        expected = np.repeat(np.asarray([r.digit for r in found], np.int64), 1 + aug_copies)
        cached = cache.load(stored_as, key, expected, (cfg.n_mels, cfg.n_frames),
                            ("items", "targets") if keep_targets else ("items",))
        if cached is not None:
            cache.say(f"{what}: read from the cache {cache.path(stored_as, key)}")
            targets = torch.from_numpy(cached[1]) if keep_targets else None
            return Bank(torch.from_numpy(cached[0]), expected, originals(len(found), aug_copies), targets)
        skip = " (--speech-aug-copies 0 skips the copies)" if aug_copies else ""
        cache.say(f"{what}: precomputing{skip}")
    waves, targets, labels = _speech_waves(data_dir, name, found, front_end, aug_copies, aug_strength, seed,
                                           progress, split, keep_targets)
    log_mels = _log_mels(front_end, waves)
    target_mels = _log_mels(front_end, targets) if keep_targets else None
    labels = np.asarray(labels, dtype=np.int64)
    if cache is not None and key is not None:
        stored = cache.store(stored_as, key, log_mels, labels, target_mels)
        if stored is not None:
            cache.say(f"{what}: cached in {stored}")
    return Bank(torch.from_numpy(log_mels), labels, originals(len(found), aug_copies),
                None if target_mels is None else torch.from_numpy(target_mels))


def _log_mels(front_end: AudioFrontEnd, waves: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([front_end.log_mel(np.stack(waves[i:i + 512])) for i in range(0, len(waves), 512)])


def originals(n_recordings: int, aug_copies: int) -> np.ndarray | None:
    """The row of each bank row's unaugmented recording: each recording is followed by its copies."""
    if not aug_copies:
        return None
    return np.repeat(np.arange(n_recordings) * (1 + aug_copies), 1 + aug_copies)


def _speech_waves(data_dir, name: str, found, front_end: AudioFrontEnd, aug_copies: int, aug_strength: float,
                  seed: int, progress: bool, split: str,
                  keep_targets: bool = False) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """(each recording then its copies; with `keep_targets`, what each would be without its noise and level
    change, else nothing; their labels)."""
    rng = np.random.default_rng([seed, 7])
    shift = front_end.cfg.aug_shift_frames * front_end.cfg.hop_length
    waves, targets, labels = [], [], []
    for rec in tqdm(found, desc=f"{name} {split}", disable=not progress, leave=False):
        samples, rate = sf.read(io.BytesIO(read_regular(rec.path)), dtype="float32", always_2d=True)
        try:
            prepared = front_end.prepare(samples, rate)
        except InputError as exc:  # its advice is for a person at a microphone, not for a dataset
            raise recording_error(rec.path, Path(data_dir), f"cannot be used ({exc})", name) from exc
        waves.append(front_end.fix_length(prepared.voiced))
        if keep_targets:
            targets.append(waves[-1])
        labels.append(rec.digit)
        for _ in range(aug_copies):
            varied, warped = augment_speech_warped(front_end.cfg, prepared.voiced, rng, aug_strength)
            offset = int(rng.integers(-shift, shift + 1)) if aug_strength > 0 else 0
            waves.append(front_end.fix_length(front_end.normalise(varied), offset))
            if keep_targets:
                targets.append(front_end.fix_length(front_end.normalise(warped), offset))
            labels.append(rec.digit)
    return waves, targets, labels


def _image_bank(data_dir, name, split, front_end, aug_copies, aug_strength, seed, progress, limit, cache,
                warped_targets) -> Bank:
    return image_bank(data_dir, name, split, limit)  # read from one array in a second or two: nothing to cache


def _speech_bank(data_dir, name, split, front_end, aug_copies, aug_strength, seed, progress, limit, cache,
                 warped_targets) -> Bank:
    # Augmented copies are made for training speech only: a test split is scored as it was recorded.
    copies = aug_copies if split in ("train", "fit") else 0
    return recording_bank(data_dir, name, split, front_end, copies, aug_strength, seed, progress, limit, cache,
                          warped_targets)


# The kinds with data files of their own; a label is read along with them.
BUILDERS = {IMAGES: _image_bank, SPEECH: _speech_bank}


def load_banks(data_dir, split: str, front_end: AudioFrontEnd, modalities, aug_copies: int = 0,
               aug_strength: float = 1.0, seed: int = 0, progress: bool = True,
               limit: int | None = None, cache: BankCache | None = None,
               warped_targets: bool = False) -> dict[str, Bank]:
    """Each modality's bank of `split` in the model's input space; augmentation applies to training speech
    only; `limit` caps each bank; `cache` (mvae.data.cache.BankCache) keeps the slow ones for the next run;
    `warped_targets` gives augmented copies their own targets (recording_bank)."""
    banks = {}
    for name in modalities:
        builder = BUILDERS.get(kind(name))
        if builder is None:
            raise NotImplementedError(f"a modality of the {kind(name).group} kind has no bank of its own")
        banks[name] = builder(data_dir, name, split, front_end, aug_copies, aug_strength, seed, progress, limit,
                              cache, warped_targets)
    return banks
