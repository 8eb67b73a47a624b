"""Readers of the prepared datasets: 28x28 uint8 .npz image sets and the FSDD recordings."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

DOWNLOAD_HINT = "python -m mvae.data.download --data-dir {dir}"

# split name -> file stem, per script; "extra" is the harder out-of-distribution set of each.
IMAGE_SPLITS = {
    "farsi": {"train": "train", "test": "test", "extra": "remaining"},
    "kannada": {"train": "train", "test": "test", "extra": "dig"},
}
# The dataset's official split is recordings 0-4 of each speaker and digit for test, 5-49 for train;
# a hyperparameter search holds out 5-9 of the training part for validation.
FSDD_SPLITS = {"test": range(0, 5), "train": range(5, 50), "fit": range(10, 50), "val": range(5, 10)}
FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def resolve_data_dir(path: str | os.PathLike | None = None) -> Path:
    """--data-dir if given, else $MVAE_DATA_DIR, else ./data."""
    chosen = path or os.environ.get("MVAE_DATA_DIR") or "data"
    return Path(chosen).expanduser()


def _missing(data_dir: Path, what: str, where: Path) -> DataError:
    return DataError(
        f"{what} not found at {where}. Download and prepare the datasets with:\n  "
        + DOWNLOAD_HINT.format(dir=data_dir)
        + "\nor point --data-dir / MVAE_DATA_DIR at a folder that holds them."
    )


@dataclass
class ImageSet:
    images: np.ndarray  # (N, 28, 28) uint8, white ink on black
    labels: np.ndarray  # (N,) int64


def load_images(data_dir, script: str, split: str) -> ImageSet:
    data_dir = Path(data_dir)
    try:
        stem = IMAGE_SPLITS[script][split]
    except KeyError:
        raise ValueError(f"unknown image set {script}/{split}; choose from {IMAGE_SPLITS}") from None
    path = data_dir / script / f"{stem}.npz"
    if not path.is_file():
        raise _missing(data_dir, f"The {script} {split} set", path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a prepared image set ({exc}). Re-run: {DOWNLOAD_HINT.format(dir=data_dir)} --force") from exc
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{path} holds images {images.dtype} {images.shape} and {labels.shape} labels; "
                        "expected uint8 (N, 28, 28) with N labels.")
    return ImageSet(images, labels.astype(np.int64))


@dataclass
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def fsdd_recordings(data_dir, split: str) -> list[Recording]:
    data_dir = Path(data_dir)
    folder = data_dir / "fsdd" / "recordings"
    if not folder.is_dir():
        raise _missing(data_dir, "The spoken digits (FSDD)", folder)
    recordings = []
    for path in sorted(folder.glob("*.wav")):
        match = FSDD_NAME.match(path.name)
        if match:
            digit, speaker, index = int(match[1]), match[2], int(match[3])
            if index in FSDD_SPLITS[split]:
                recordings.append(Recording(path, digit, speaker, index))
    if not recordings:
        raise _missing(data_dir, f"FSDD {split} recordings", folder)
    return recordings
