"""Download the three datasets from their canonical sources and write them in the prepared format.

    python -m mvae.data.download --data-dir DIR [--only kannada farsi fsdd] [--force] [--mirror URL]

The prepared format, which the loaders read:

    DIR/kannada/{train,test,dig}.npz    images uint8 (N, 28, 28), white ink on black; labels uint8 (N,)
    DIR/farsi/{train,test,remaining}.npz
    DIR/fsdd/recordings/{digit}_{speaker}_{index}.wav   the original files, byte for byte

Raw downloads go to DIR/downloads/<set>/ and are removed once their set is prepared. A download that
stops midway stays there as `<name>.part` and the next run resumes it. Where no SHA-256 of a raw file
is pinned below, the hash of its first download that prepared successfully is recorded next to it as
`<name>.sha256` (sha256sum format) and later downloads must match it.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import io
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import IMAGE_SIZE, N_CLASSES
from ..errors import DataError, run_cli
from ..store import atomic_write
from .formats import prepare_images, read_hoda_cdb, read_idx
from .sources import resolve_data_dir

DATA_DIR_ENV = "MVAE_DATA_DIR"
MIRROR_ENV = "MVAE_DOWNLOAD_MIRROR"
DOWNLOADS = "downloads"
CHUNK = 1 << 16
TIMEOUT_S = 60.0
USER_AGENT = "mvae-data-download/1"

KANNADA_COMMIT = "f8390ece0c6990551e6f35189ccc42757bb29c43"
HODA_COMMIT = "728dd5465fcf38c3c82a1d3fda721da30b2e70ed"
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"

RECORDING_MEMBER = re.compile(r"[^/]+/recordings/([^/]+\.wav)")
RECORDING_NAME = re.compile(r"[0-9]_[a-z]+_[0-9]+\.wav")


@dataclass(frozen=True)
class Output:
    """One prepared file (or folder) of a set and the raw files it is made from."""

    sources: tuple[str, ...]
    # SHA-256 of the prepared content (`arrays_sha256` or `recordings_sha256`), where it is known.
    sha256: str | None = None


@dataclass(frozen=True)
class DataSet:
    kind: str  # "idx", "cdb" or "wav-zip": how the raw files become the outputs
    base_url: str  # a raw file's URL is base_url + its name, percent-encoded
    outputs: Mapping[str, Output]  # keyed by the path inside DIR/<set>/
    raw_sha256: Mapping[str, str] = field(default_factory=dict)  # raw file name -> SHA-256, where known

    @property
    def raw_files(self) -> list[str]:
        return _sources(self.outputs.values())


def _sources(outputs: Iterable[Output]) -> list[str]:
    """The raw files the outputs are made from, each once, in order."""
    return list(dict.fromkeys(name for out in outputs for name in out.sources))


def _idx_pair(stem: str) -> tuple[str, str]:
    return f"X_{stem}-idx3-ubyte.gz", f"y_{stem}-idx1-ubyte.gz"


# Hashes of the raw files could not be computed where this was written (no network), so what is pinned
# is what the local copies prove: the Kannada test and Dig-MNIST arrays were decoded unchanged from the
# canonical idx files, and the FSDD wavs are byte-identical to the repository's. The GitHub archive zip
# itself is not pinned on purpose: GitHub does not promise byte-stable archives, only stable contents.
MANIFEST: dict[str, DataSet] = {
    "kannada": DataSet(
        kind="idx",
        base_url=f"https://raw.githubusercontent.com/vinayprabhu/Kannada_MNIST/{KANNADA_COMMIT}"
        "/data/output_tensors/MNIST_format/",
        outputs={
            "train.npz": Output(_idx_pair("kannada_MNIST_train")),
            "test.npz": Output(
                _idx_pair("kannada_MNIST_test"), "85908e292026347510b139537af850fb571dd377c6a004f44c15b5b0e86ba5bc"
            ),
            "dig.npz": Output(
                _idx_pair("dig_MNIST"), "a3305dcd56be69178fb493295887c13ae5033509659f733711a31091251bdba2"
            ),
        },
    ),
    "farsi": DataSet(
        kind="cdb",
        base_url=f"https://raw.githubusercontent.com/amir-saniyan/HodaDatasetReader/{HODA_COMMIT}/DigitDB/",
        outputs={
            "train.npz": Output(("Train 60000.cdb",)),
            "test.npz": Output(("Test 20000.cdb",)),
            "remaining.npz": Output(("RemainingSamples.cdb",)),
        },
    ),
    "fsdd": DataSet(
        kind="wav-zip",
        base_url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/",
        outputs={
            "recordings": Output(
                (f"{FSDD_COMMIT}.zip",), "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f"
            ),
        },
    ),
}


# --------------------------------------------------------------------------------------------------
# Content hashes


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


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 16):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Writing files


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


@contextmanager
def _disk_space(path: Path, needed: int | None):
    """Turn a full disk into a message that says how much room the write needs."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(path.parent).free
        more = f"about {_mb(needed)} more" if needed is not None else "more space"
        raise DataError(
            f"The disk is full while writing {path}: it needs {more} and {_mb(free)} are free. "
            "Free some space and re-run the command; downloads resume where they stopped."
        ) from exc


def _write_file(path: Path, data: bytes, needed: int | None = None) -> None:
    with _disk_space(path, len(data) if needed is None else needed), open(path, "wb") as fh:
        fh.write(data)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_atomic(path: Path, data: bytes) -> None:
    """Through a temporary file in the same folder, so a reader never sees half a file."""
    with _disk_space(path, len(data)):
        atomic_write(path, data)


def _save_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels)
    _write_atomic(path, buffer.getvalue())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Downloading one file


def _request(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is as long as the file or longer: start again
            return exc
        raise DataError(
            f"The server answered {exc.code} {exc.reason} for {url}. Check the address (and --mirror or "
            f"${MIRROR_ENV} if set), then re-run the command."
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"Could not download {url} ({reason}). Check the network connection and re-run the command; "
            f"where the canonical sources cannot be reached, fetch the raw files from a mirror with --mirror URL "
            f"(or ${MIRROR_ENV}), which serves them as URL/<set>/<file name>."
        ) from exc


def _interrupted(url: str, part: Path, received: int, total: int | None, reason: object) -> DataError:
    of_total = f" of {_mb(total)}" if total is not None else ""
    return DataError(
        f"The download of {url} stopped after {_mb(received)}{of_total} ({reason}). What arrived is kept in "
        f"{part}; re-run the command to resume."
    )


def _fetch(url: str, dest: Path, timeout: float, desc: str) -> None:
    """Download url to dest through dest.part, resuming a .part left by an earlier run."""
    part = dest.with_name(dest.name + ".part")
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        response = _request(url, offset, timeout)
        content_range = response.headers.get("Content-Range", "")
        resumed = offset > 0 and response.status == 206 and content_range.startswith(f"bytes {offset}-")
        if response.status == 200 or resumed:
            break
        # A server that cannot continue this .part: drop it and ask for the whole file.
        response.close()
        part.unlink(missing_ok=True)
    else:
        raise DataError(f"The server answered {response.status} for {url} when asked for the whole file.")

    if not resumed:
        offset = 0
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    received = offset
    with response, open(part, "ab" if resumed else "wb") as fh, tqdm(
        total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False
    ) as bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _interrupted(url, part, received, total, exc) from exc
            if not chunk:
                break
            with _disk_space(part, (total - received) if total is not None else None):
                fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received < total:
        raise _interrupted(url, part, received, total, "the connection closed early")
    os.replace(part, dest)


# --------------------------------------------------------------------------------------------------
# Turning raw files into prepared outputs


def _check_images(name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
        raise DataError(f"{name} holds {images.dtype} images of shape {images.shape}, not N x 28 x 28 uint8.")
    if labels.shape != (len(images),):
        raise DataError(f"{name} has {len(images)} images but labels of shape {labels.shape}.")
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise DataError(f"{name} has label {int(labels.max())}; digit labels run from 0 to 9.")


def _make_images(kind: str, raw: Mapping[str, bytes], out: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "idx":
        x_name, y_name = raw
        images, labels = read_idx(raw[x_name], x_name), read_idx(raw[y_name], y_name)
        name = f"{x_name} with {y_name}"
    else:
        (name,) = raw
        digits, labels = read_hoda_cdb(raw[name], name)
        images = prepare_images(tqdm(digits, desc=f"preparing {out}", unit="img", disable=None, leave=False))
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
    tmp = _temp_path(dest)
    _remove(tmp)
    tmp.mkdir()
    try:
        remaining = sum(map(len, files.values()))
        for name, data in files.items():
            _write_file(tmp / name, data, needed=remaining)
            remaining -= len(data)
        os.replace(tmp, dest)
    finally:
        _remove(tmp)


def _check_sha(what: str, expected: str | None, actual: str, advice: str, bad: Path | None = None) -> None:
    """Raise when a hash is known and differs, deleting the bad file first."""
    if expected is not None and actual != expected:
        if bad is not None:
            bad.unlink(missing_ok=True)
        raise DataError(
            f"{what} does not match its expected SHA-256.\n  expected {expected}\n  actual   {actual}\n{advice}"
        )


def _decode(dataset: DataSet, out: str, spec: Output, raw_dir: Path) -> Callable[[Path], None]:
    """Decode and check the raw files of one output; return what writes it."""
    raw = {name: (raw_dir / name).read_bytes() for name in spec.sources}
    advice = "The downloaded files were deleted. Re-run the command to download them again."
    if dataset.kind == "wav-zip":
        (zip_name,) = raw
        files = _read_recordings(zip_name, raw[zip_name])
        _check_sha(f"The recordings in {zip_name}", spec.sha256, recordings_sha256(files), advice)
        return lambda dest: _write_recordings(dest, files)
    images, labels = _make_images(dataset.kind, raw, out)
    _check_sha(f"The images and labels decoded for {out}", spec.sha256, arrays_sha256(images, labels), advice)
    return lambda dest: _save_npz(dest, images, labels)


# --------------------------------------------------------------------------------------------------
# Whole sets


def _base_url(name: str, dataset: DataSet, base_urls: Mapping[str, str] | None) -> str:
    if base_urls and name in base_urls:
        base = base_urls[name]
    elif os.environ.get(MIRROR_ENV):
        base = f"{os.environ[MIRROR_ENV].rstrip('/')}/{name}/"
    else:
        base = dataset.base_url
    return base if base.endswith("/") else base + "/"


def _sidecar(raw_dir: Path, name: str) -> Path:
    return raw_dir / f"{name}.sha256"


def _expected_raw_sha(dataset: DataSet, raw_dir: Path, name: str) -> tuple[str | None, str]:
    """The hash a raw file must have, and what to do when it does not."""
    again = "The file was deleted. Re-run the command to download it again."
    if name in dataset.raw_sha256:
        return dataset.raw_sha256[name], again
    sidecar = _sidecar(raw_dir, name)
    if sidecar.exists():
        recorded = sidecar.read_text().split()[0]
        return recorded, (
            f"{again} If the source has changed on purpose, re-run with --force to accept the new version "
            f"(the hash of the first download is recorded in {sidecar})."
        )
    return None, again


def _download_set(name: str, dataset: DataSet, data_dir: Path, base_url: str, force: bool, timeout: float) -> str:
    out_dir, raw_dir = data_dir / name, data_dir / DOWNLOADS / name
    if force:
        for out in dataset.outputs:
            _remove(out_dir / out)
        _remove(raw_dir)
    missing = {out: spec for out, spec in dataset.outputs.items() if not (out_dir / out).exists()}
    if not missing:
        tqdm.write(f"{name}: already prepared in {out_dir} (--force prepares it again)", file=sys.stderr)
        return "present"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(parents=True, exist_ok=True)

    needed = _sources(missing.values())
    hashes = {}
    for raw_name in needed:
        path = raw_dir / raw_name
        url = base_url + urllib.parse.quote(raw_name)
        if not path.exists():
            _fetch(url, path, timeout, desc=f"{name}/{raw_name}")
        hashes[raw_name] = _file_sha256(path)
        expected, advice = _expected_raw_sha(dataset, raw_dir, raw_name)
        _check_sha(f"{raw_name} (from {url})", expected, hashes[raw_name], advice, bad=path)

    for out, spec in missing.items():
        try:
            write = _decode(dataset, out, spec, raw_dir)
        except DataError:
            # A file that cannot be decoded is bad: keeping it would only fail the same way next time.
            for src in spec.sources:
                (raw_dir / src).unlink(missing_ok=True)
            raise
        write(out_dir / out)
        tqdm.write(f"{name}: wrote {out_dir / out}", file=sys.stderr)

    for raw_name in needed:
        if raw_name not in dataset.raw_sha256 and not _sidecar(raw_dir, raw_name).exists():
            _write_atomic(_sidecar(raw_dir, raw_name), f"{hashes[raw_name]}  {raw_name}\n".encode())
        (raw_dir / raw_name).unlink()
    return "prepared"


def download_all(
    data_dir: str | os.PathLike,
    only: Iterable[str] | None = None,
    force: bool = False,
    base_urls: Mapping[str, str] | None = None,
    manifest: Mapping[str, DataSet] | None = None,
    timeout: float = TIMEOUT_S,
) -> dict[str, str]:
    """Download and prepare the chosen sets (all by default) under data_dir.

    base_urls maps a set name to the folder URL its raw files are fetched from; sets it does not name come
    from $MVAE_DOWNLOAD_MIRROR/<set>/ when that is set, else from the canonical sources in `MANIFEST`.
    manifest replaces `MANIFEST` (its expected hashes included). Returns, per set, "prepared" or
    "present" (already complete and left alone). Raises DataError with a message that says what to do.
    """
    manifest = MANIFEST if manifest is None else manifest
    names = list(manifest) if only is None else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in manifest]
    if unknown:
        raise ValueError(f"Unknown data set(s) {unknown}; choose from {list(manifest)}.")
    data_dir = Path(data_dir)
    results = {}
    for name in names:
        dataset = manifest[name]
        results[name] = _download_set(name, dataset, data_dir, _base_url(name, dataset, base_urls), force, timeout)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mvae.data.download",
        description="Download Kannada-MNIST, the Hoda Farsi digits and the Free Spoken Digit Dataset from their "
        "canonical sources, check them, and write them in the format the training code reads.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"folder to write the prepared data to (default: ${DATA_DIR_ENV}, else ./data, as the loaders)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(MANIFEST),
        metavar="SET",
        help=f"prepare only these sets, from {', '.join(MANIFEST)} (default: all of them)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="download and prepare the sets again even if they are present, and forget the hashes recorded "
        "at their first download",
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        help=f"fetch every raw file from URL/<set>/<file name> instead of the canonical sources "
        f"(default: ${MIRROR_ENV} if set)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up on a connection that stays silent this long; a re-run resumes (default: {TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    base_urls = {name: f"{args.mirror.rstrip('/')}/{name}/" for name in MANIFEST} if args.mirror else None

    def body():
        results = download_all(data_dir, args.only, args.force, base_urls=base_urls, timeout=args.timeout)
        for name, status in results.items():
            print(f"{name}: {status} in {data_dir / name}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
