"""Readers for the raw dataset formats, and the step that turns raw digits into the prepared format.

The readers take bytes rather than paths so that the downloader can check a file before it keeps it,
and so that tests can build files in memory. Every malformed input raises `DataError` with a message
that names the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..signals.images import fit_and_center, to_uint8

# --------------------------------------------------------------------------------------------------
# MNIST idx

GZIP_MAGIC = b"\x1f\x8b"
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(data: bytes, name: str = "the idx file") -> np.ndarray:
    """Decode an MNIST idx file (plain or gzip-compressed) into an array in native byte order."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{name} is a damaged gzip file ({exc}).") from exc
    if len(data) < 4:
        raise DataError(f"{name} is too short to be an idx file ({len(data)} bytes).")
    zero, code, ndim = struct.unpack_from(">HBB", data)
    if zero != 0:
        raise DataError(f"{name} is not an idx file: its first two bytes are {data[:2].hex()}, not 0000.")
    if code not in IDX_DTYPES:
        raise DataError(f"{name} has an unknown idx type code 0x{code:02x}.")
    if ndim == 0:
        raise DataError(f"{name} declares 0 dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} ends inside its header ({len(data)} of {header} bytes).")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{name} holds {len(data)} bytes but its header {tuple(dims)} of {dtype.name} needs {expected}; "
            "the file is truncated or damaged."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(array: np.ndarray) -> bytes:
    """Encode an array as an uncompressed idx file (the inverse of `read_idx`)."""
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    raise ValueError(f"idx files cannot hold {array.dtype}.")


# --------------------------------------------------------------------------------------------------
# Hoda .cdb
#
# Header, 1024 bytes, little-endian: year u16, month u8, day u8, width u8, height u8, record count u32,
# 128 per-label record counts u32, image type u8 (0 binary, 1 grey), 256 bytes of comment, 245
# reserved. A width and height of 0 mean that every record carries its own size.
# Record: 0xFF, label u8, [width u8, height u8], byte count u16, then each row as run lengths u8 that
# start with background and alternate with ink, summing to the width.

CDB_HEADER = struct.Struct("<HBBBBI128IB256x245x")
CDB_START = 0xFF
assert CDB_HEADER.size == 1024


@dataclass(frozen=True)
class CdbHeader:
    width: int  # with height, 0 when every record carries its own size
    height: int
    total: int  # records
    label_counts: np.ndarray  # records of each of the 128 labels
    record_header: int  # bytes before a record's pixels

    @property
    def fixed_size(self) -> bool:
        return self.width > 0 and self.height > 0


def read_cdb_header(data: bytes, name: str) -> CdbHeader:
    """The header of a binary .cdb file, checked against the file's length."""
    if len(data) < CDB_HEADER.size:
        raise DataError(f"{name} is too short for a Hoda .cdb header ({len(data)} of 1024 bytes).")
    _year, _month, _day, width, height, total, *rest = CDB_HEADER.unpack_from(data)
    label_counts, image_type = np.array(rest[:128], dtype=np.int64), rest[128]
    if image_type != 0:
        raise DataError(f"{name} holds grey-level images (type {image_type}); only binary .cdb files are supported.")
    record_header = 4 if width > 0 and height > 0 else 6
    if total * (record_header + 1) > len(data) - CDB_HEADER.size:
        raise DataError(
            f"{name} is truncated: its header announces {total} records, more than its {len(data)} bytes can hold."
        )
    return CdbHeader(width, height, total, label_counts, record_header)


def read_cdb_rows(data: bytes, cursor: int, width: int, height: int, fail) -> tuple[np.ndarray, int]:
    """One record's rows of run lengths from `cursor` -> (its image, the cursor after them); `fail(what)` is the
    error that names the record."""
    runs, colours = [], []
    for _ in range(height):
        filled, colour = 0, 0
        while filled < width:
            if cursor >= len(data):
                raise fail("is cut off inside its pixels")
            runs.append(data[cursor])
            colours.append(colour)
            filled += data[cursor]
            colour ^= 1
            cursor += 1
        if filled != width:
            raise fail(f"has a row of {filled} pixels in a {width} px wide image")
    return np.repeat(np.array(colours, dtype=np.uint8), runs).reshape(height, width), cursor


def check_label_counts(labels: np.ndarray, label_counts: np.ndarray, name: str) -> None:
    found = np.bincount(labels, minlength=len(label_counts))
    wrong = np.flatnonzero(found != label_counts)
    if wrong.size:
        label = wrong[0]
        raise DataError(
            f"{name} is damaged: its header counts {label_counts[label]} records of label {label} "
            f"but the file holds {found[label]}."
        )


def read_hoda_cdb(data: bytes, name: str = "the .cdb file") -> tuple[list[np.ndarray], np.ndarray]:
    """Decode a binary Hoda .cdb file into images (uint8, ink 1, size varying) and labels (uint8)."""
    header = read_cdb_header(data, name)
    width, height, total, record_header = header.width, header.height, header.total, header.record_header
    images: list[np.ndarray] = []
    labels = np.zeros(total, dtype=np.uint8)
    pos = CDB_HEADER.size

    def fail(index: int, what: str) -> DataError:
        return DataError(f"{name} is damaged: record {index} of {total} (byte {pos}) {what}.")

    for i in range(total):
        if pos + record_header > len(data):
            raise fail(i, "is cut off")
        if data[pos] != CDB_START:
            raise fail(i, f"starts with 0x{data[pos]:02x}, not 0xff")
        labels[i] = data[pos + 1]
        if labels[i] >= len(header.label_counts):
            raise fail(i, f"has label {labels[i]}, beyond the header's {len(header.label_counts)} classes")
        if not header.fixed_size:
            width, height = data[pos + 2], data[pos + 3]
        (byte_count,) = struct.unpack_from("<H", data, pos + record_header - 2)
        if width == 0 or height == 0:
            raise fail(i, f"has an empty {width}x{height} image")
        start = pos + record_header
        image, cursor = read_cdb_rows(data, start, width, height, lambda what, i=i: fail(i, what))
        used = cursor - start
        # The published description leaves open whether the count includes the record's own header.
        if byte_count not in (used, used + record_header):
            raise fail(i, f"declares {byte_count} bytes of pixels but holds {used}")
        images.append(image)
        pos = cursor

    if pos != len(data):
        raise DataError(f"{name} has {len(data) - pos} bytes after its last record; the header says {total} records.")
    check_label_counts(labels, header.label_counts, name)
    return images, labels


def write_hoda_cdb(
    images: Sequence[np.ndarray], labels: Sequence[int], date: tuple[int, int, int] = (2005, 8, 4)
) -> bytes:
    """Encode binary images (non-zero = ink, 1 to 255 px a side) as a variable-size Hoda .cdb file."""
    labels = np.asarray(labels, dtype=np.uint8)
    counts = np.bincount(labels, minlength=128)
    out = [CDB_HEADER.pack(*date, 0, 0, len(images), *counts, 0)]
    for image, label in zip(images, labels, strict=True):
        ink = np.asarray(image) != 0
        height, width = ink.shape
        runs = bytearray()
        for row in ink:
            # Runs start with background, so a row that starts with ink opens with a run of 0.
            changes = np.flatnonzero(np.concatenate(([False], row[:-1])) != row)
            runs += bytes(np.diff(np.concatenate(([0], changes, [width]))).astype(np.uint8))
        out.append(struct.pack("<BBBBH", CDB_START, label, width, height, len(runs)) + bytes(runs))
    return b"".join(out)


# --------------------------------------------------------------------------------------------------
# Prepared images


def prepare_images(raw_images: Iterable[np.ndarray]) -> np.ndarray:
    """Raw digits (ink high: binary 0/1 or 0-255) -> (N, 28, 28) uint8 in the app's own preprocessing."""
    out = []
    for i, image in enumerate(raw_images):
        image = np.asarray(image)
        peak = float(image.max(initial=0))
        if peak <= 0:
            raise DataError(f"Image {i} has no ink; the source file is damaged.")
        ink = image.astype(np.float32) / (255.0 if peak > 1 else 1.0)
        out.append(to_uint8(fit_and_center(ink)))
    if not out:
        raise DataError("There are no images to prepare.")
    return np.stack(out)
