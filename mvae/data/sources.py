"""Readers of the prepared datasets: 28x28 uint8 .npz image sets and folders of recordings.

Where a modality's files lie and which of them make each split is its entry's `source` (mvae.registry): an
`ImageFiles` or a `Recordings`; the readers take the modality's name and ask its entry."""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import registry
from ..config import IMAGE_SIZE, N_CLASSES
from ..errors import DataError

DOWNLOAD_HINT = "python -m mvae.data.download --data-dir {dir}"

RECORDING_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")  # {digit}_{speaker}_{index}.wav
# Pairing draws each digit's items at random: with a single item of a digit, every pair of that digit
# repeats it, and the model learns that one drawing or recording instead of the digit. The smallest split
# the tools read (the synthetic test data's fit split) holds 4 of each digit, the real data's 30 or more.
MIN_ITEMS_PER_CLASS = 2


def resolve_data_dir(path: str | os.PathLike | None = None) -> Path:
    """--data-dir if given, else $MVAE_DATA_DIR, else ./data."""
    chosen = path or os.environ.get("MVAE_DATA_DIR") or "data"
    return Path(chosen).expanduser()


def _missing(data_dir: Path, what: str, where: Path) -> DataError:
    # One line, as every refusal of a command-line tool is.
    return DataError(
        f"{what} not found at {where}. Download and prepare the datasets with `"
        + DOWNLOAD_HINT.format(dir=data_dir)
        + "`, or point --data-dir / MVAE_DATA_DIR at a folder that holds them."
    )


def prepare_again(data_dir, name: str, it: str = "it") -> str:
    """What to run to replace a modality's damaged files, in a sentence: a modality that is downloaded is
    prepared again by the downloader; one that is not must be put back by whoever made it."""
    source = registry.modality(name).source
    if registry.modality(name).download is None:
        return f"Replace {it} with a sound copy in {Path(data_dir) / source.folder}."
    return f"Prepare {it} again with: {DOWNLOAD_HINT.format(dir=data_dir)} --only {source.folder} --force"


def _source(name: str, wanted: type, what: str):
    """The modality's `source`, which must be of the type its reader reads."""
    source = registry.modality(name).source
    if not isinstance(source, wanted):
        readable = [n for n, m in registry.MODALITIES.items() if isinstance(m.source, wanted)]
        raise ValueError(f"modality {name!r} has no {what}; these have: {', '.join(readable) or 'none'}")
    return source


def open_regular(path) -> int:
    """A file descriptor of `path` opened for reading, only when it is a regular file. Opening a named pipe
    for reading blocks until someone writes to it, and a device can stream forever; the open is
    non-blocking and the type is checked on what was opened, so neither can stall a run."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device or other special file")
            raise OSError(errno.EINVAL, f"it is {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (see open_regular); OSError when it is none, or holds more than `limit`."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise OSError(errno.EFBIG, f"it holds more than {limit:,} bytes")
    return data


def class_shortfall(labels, what: str) -> str | None:
    """What keeps a set's labels from pairing every digit with every modality, in words, or None."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=N_CLASSES)
    few = [c for c in range(N_CLASSES) if counts[c] < MIN_ITEMS_PER_CLASS]
    if not few:
        return None
    shown = ", ".join(f"{c} ({counts[c]})" for c in few)
    return (f"{what} too few items of digit(s) {shown}: training pairs every digit across the modalities and needs "
            f"at least {MIN_ITEMS_PER_CLASS} of each of the {N_CLASSES}")


@dataclass
class ImageSet:
    images: np.ndarray  # (N, 28, 28) uint8, white ink on black
    labels: np.ndarray  # (N,) int64


ZIP_MAGIC = b"PK\x03\x04"
# Far above the largest prepared set (60,000 digits, 47 MB), far below what would exhaust memory: a
# damaged or hostile archive that declares more is refused before anything is allocated.
MAX_ARRAY_BYTES = 1 << 28  # read and copied once: at most twice this in memory


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """One .npy member, its header checked against the archive's own sizes before the data is read."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise DataError(f"has no {name!r} array (it holds {', '.join(archive.namelist()) or 'nothing'})") from None
    if info.file_size > MAX_ARRAY_BYTES:
        raise DataError(f"declares a {info.file_size:,}-byte {name!r} array, more than a prepared set holds")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(f)
        if dtype.hasobject:
            raise DataError(f"stores its {name!r} as Python objects, which are never loaded")
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if f.tell() + need != info.file_size:
            raise DataError(f"declares a {name!r} array of {shape} {dtype} that does not fit its "
                            f"{info.file_size:,} bytes")
        data = f.read()  # reading to the end checks the member's CRC
    # A copy: arrays over the read-only bytes could not be handed to torch.from_numpy.
    array = np.frombuffer(data, dtype=dtype, count=need // max(dtype.itemsize, 1)).copy()
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def read_image_archive(path: Path) -> ImageSet:
    """A prepared .npz image set, every byte checked: readable, (N, 28, 28) uint8 images, N labels 0-9.

    Nothing is unpickled, and a damaged archive is a DataError whatever its damage.
    """
    path = Path(path)
    try:
        f = os.fdopen(open_regular(path), "rb")
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}).") from exc
    try:
        with f:
            if f.read(4) != ZIP_MAGIC:
                raise DataError("is not an .npz archive (it does not start like a zip file)")
            with zipfile.ZipFile(f) as archive:
                images, labels = _read_member(archive, "images"), _read_member(archive, "labels")
    except DataError as exc:
        raise DataError(f"{path} {exc}.") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, struct.error) as exc:
        raise DataError(f"{path} is damaged: truncated or altered ({type(exc).__name__}: {exc}).") from exc
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path} holds images of {images.dtype} {images.shape}; expected uint8 (N, 28, 28).")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise DataError(f"{path} holds {labels.dtype} labels of shape {labels.shape} for {len(images)} images; "
                        "expected one whole-number label per image.")
    if len(images) == 0:
        raise DataError(f"{path} holds no images.")
    wrong = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if wrong.size:
        raise DataError(f"{path} has {wrong.size} label(s) outside 0-{N_CLASSES - 1}, the first {labels[wrong[0]]} "
                        f"at row {wrong[0]}.")
    return ImageSet(images, labels.astype(np.int64))


def load_images(data_dir, name: str, split: str) -> ImageSet:
    """One split of an image modality, from DIR/<its folder>/<the split's stem>.npz."""
    data_dir = Path(data_dir)
    files = _source(name, registry.ImageFiles, "image files")
    if split not in files.splits:
        sets = {n: dict(m.source.splits) for n, m in registry.MODALITIES.items()
                if isinstance(m.source, registry.ImageFiles)}
        raise ValueError(f"unknown image set {name}/{split}; choose from {sets}")
    path = data_dir / files.folder / f"{files.splits[split]}.npz"
    if not path.exists():
        raise _missing(data_dir, f"The {name} {split} set", path)
    try:
        images = read_image_archive(path)
        shortfall = class_shortfall(images.labels, "holds")
        if shortfall:
            raise DataError(f"{path} {shortfall}.")
        return images
    except DataError as exc:
        raise DataError(f"{exc} {prepare_again(data_dir, name)}") from exc


@dataclass
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def recordings_folder(data_dir, name: str) -> Path:
    """Where a recorded modality's wavs lie: DIR/<its folder>/recordings."""
    return Path(data_dir) / _source(name, registry.Recordings, "recordings").folder / "recordings"


def recordings(data_dir, name: str, split: str) -> list[Recording]:
    """The recordings of one split of a recorded modality: those whose index falls in the split's range."""
    data_dir = Path(data_dir)
    source = _source(name, registry.Recordings, "recordings")
    if split not in source.splits:
        raise ValueError(f"unknown split {split!r} of the {name} recordings; choose from {', '.join(source.splits)}")
    folder = recordings_folder(data_dir, name)
    title = registry.title(name)
    if not folder.is_dir():
        raise _missing(data_dir, f"The {title} recordings", folder)
    found = []
    for path in sorted(folder.glob("*.wav")):
        match = RECORDING_NAME.match(path.name)
        if match:
            digit, speaker, index = int(match[1]), match[2], int(match[3])
            if index in source.splits[split]:
                found.append(Recording(path, digit, speaker, index))
    if not found:
        raise _missing(data_dir, f"The {split} split of the {title} recordings", folder)
    shortfall = class_shortfall([r.digit for r in found], "has")
    if shortfall:
        raise DataError(f"The {split} split of the {title} recordings in {folder} {shortfall}. "
                        f"{prepare_again(data_dir, name, 'them')}")
    return found

