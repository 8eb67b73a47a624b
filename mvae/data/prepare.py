"""Turning a downloaded set's raw files into the prepared format, for the downloader (mvae.data.download).

Each `DataSet.kind` (mvae.registry) is one raw format: "idx" (gzipped MNIST-style arrays), "cdb" (the Hoda
digit database) or "wav-zip" (a zip archive of recordings). What is decoded is checked, against the SHA-256
of its content where the registry pins one, before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import IMAGE_SIZE, N_CLASSES
from ..errors import DataError
from ..registry import DataSet, Output
from .fetch import remove, temp_path, write_atomic, write_file
from .formats import prepare_images, read_hoda_cdb, read_idx

RECORDING_MEMBER = re.compile(r"[^/]+/recordings/([^/]+\.wav)")
RECORDING_NAME = re.compile(r"[0-9]_[a-z]+_[0-9]+\.wav")
RECORDING_FORMATS = ("wav-zip",)


def arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a prepared image set: its uint8 images' bytes (C order) followed by its labels' bytes."""
    digest = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def recordings_sha256(files: Mapping[str, bytes]) -> str:
    """SHA-256 over the lines "<name> <sha256 of the file>\\n", sorted by name.

    For a folder this is `sha256sum * | awk '{print $2" "$1}' | LC_ALL=C sort | sha256sum`.
    """
    lines = "".join(f"{name} {hashlib.sha256(files[name]).hexdigest()}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def check_sha(what: str, expected: str | None, actual: str, advice: str, bad: Path | None = None) -> None:
    """Raise when a hash is known and differs, deleting the bad file first."""
    if expected is not None and actual != expected:
        if bad is not None:
            bad.unlink(missing_ok=True)
        raise DataError(
            f"{what} does not match its expected SHA-256.\n  expected {expected}\n  actual   {actual}\n{advice}"
        )


def _save_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels)
    write_atomic(path, buffer.getvalue())


def _check_images(name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
        raise DataError(f"{name} holds {images.dtype} images of shape {images.shape}, not N x 28 x 28 uint8.")
    if labels.shape != (len(images),):
        raise DataError(f"{name} has {len(images)} images but labels of shape {labels.shape}.")
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise DataError(f"{name} has label {int(labels.max())}; digit labels run from 0 to 9.")


def _idx_images(raw: Mapping[str, bytes], out: str) -> tuple[str, np.ndarray, np.ndarray]:
    x_name, y_name = raw
    return f"{x_name} with {y_name}", read_idx(raw[x_name], x_name), read_idx(raw[y_name], y_name)


def _cdb_images(raw: Mapping[str, bytes], out: str) -> tuple[str, np.ndarray, np.ndarray]:
    (name,) = raw
    digits, labels = read_hoda_cdb(raw[name], name)
    images = prepare_images(tqdm(digits, desc=f"preparing {out}", unit="img", disable=None, leave=False))
    return name, images, labels


# Each raw image format's reader: (raw files, the output's name) -> (what was read, images, labels).
IMAGE_READERS = {"idx": _idx_images, "cdb": _cdb_images}


def _make_images(kind: str, raw: Mapping[str, bytes], out: str) -> tuple[np.ndarray, np.ndarray]:
    name, images, labels = IMAGE_READERS[kind](raw, out)
    _check_images(name, images, labels)
    return images, labels.astype(np.uint8)


def _read_recordings(zip_name: str, data: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {}
            for member in archive.infolist():
                match = RECORDING_MEMBER.fullmatch(member.filename)
                if not match:
                    continue
                if not RECORDING_NAME.fullmatch(match[1]):
                    raise DataError(f"{zip_name} holds {member.filename}, not named <digit>_<speaker>_<index>.wav.")
                files[match[1]] = archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(f"{zip_name} is not a readable zip archive ({exc}).") from exc
    if not files:
        raise DataError(f"{zip_name} has no recordings/*.wav files.")
    return files


def _write_recordings(dest: Path, files: Mapping[str, bytes]) -> None:
    """Write the wavs into a temporary folder and rename it, so the folder appears complete or not at all."""
    tmp = temp_path(dest)
    remove(tmp)
    tmp.mkdir()
    try:
        remaining = sum(map(len, files.values()))
        for name, data in files.items():
            write_file(tmp / name, data, needed=remaining)
            remaining -= len(data)
        os.replace(tmp, dest)
    finally:
        remove(tmp)


def decode(dataset: DataSet, out: str, spec: Output, raw_dir: Path) -> Callable[[Path], None]:
    """Decode and check the raw files of one output; return what writes it."""
    raw = {name: (raw_dir / name).read_bytes() for name in spec.sources}
    advice = "The downloaded files were deleted. Re-run the command to download them again."
    if dataset.kind in RECORDING_FORMATS:
        (zip_name,) = raw
        files = _read_recordings(zip_name, raw[zip_name])
        check_sha(f"The recordings in {zip_name}", spec.sha256, recordings_sha256(files), advice)
        return lambda dest: _write_recordings(dest, files)
    if dataset.kind not in IMAGE_READERS:
        known = ", ".join((*IMAGE_READERS, *RECORDING_FORMATS))
        raise ValueError(f"unknown raw format {dataset.kind!r}; use one of {known}")
    images, labels = _make_images(dataset.kind, raw, out)
    check_sha(f"The images and labels decoded for {out}", spec.sha256, arrays_sha256(images, labels), advice)
    return lambda dest: _save_npz(dest, images, labels)
