"""Fetching one raw file over HTTP for the downloader (mvae.data.download): resumed from the `.part` an
interrupted download left, with a full disk, a silent server or a dropped connection each turned into a
DataError that says what to do."""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError
from ..store import atomic_write

MIRROR_ENV = "MVAE_DOWNLOAD_MIRROR"
CHUNK = 1 << 16
USER_AGENT = "mvae-data-download/1"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 16):
            digest.update(chunk)
    return digest.hexdigest()


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


@contextmanager
def disk_space(path: Path, needed: int | None):
    """Turn a full disk into a message that says how much room the write needs."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(path.parent).free
        more = f"about {mb(needed)} more" if needed is not None else "more space"
        raise DataError(
            f"The disk is full while writing {path}: it needs {more} and {mb(free)} are free. "
            "Free some space and re-run the command; downloads resume where they stopped."
        ) from exc


def write_file(path: Path, data: bytes, needed: int | None = None) -> None:
    with disk_space(path, len(data) if needed is None else needed), open(path, "wb") as fh:
        fh.write(data)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Through a temporary file in the same folder, so a reader never sees half a file."""
    with disk_space(path, len(data)):
        atomic_write(path, data)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


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
    of_total = f" of {mb(total)}" if total is not None else ""
    return DataError(
        f"The download of {url} stopped after {mb(received)}{of_total} ({reason}). What arrived is kept in "
        f"{part}; re-run the command to resume."
    )


def _open_response(url: str, part: Path, timeout: float):
    """The server's answer for url and the offset it continues `part` from (0: the whole file)."""
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        response = _request(url, offset, timeout)
        content_range = response.headers.get("Content-Range", "")
        resumed = offset > 0 and response.status == 206 and content_range.startswith(f"bytes {offset}-")
        if response.status == 200 or resumed:
            return response, offset if resumed else 0
        # A server that cannot continue this .part: drop it and ask for the whole file.
        response.close()
        part.unlink(missing_ok=True)
    raise DataError(f"The server answered {response.status} for {url} when asked for the whole file.")


def fetch(url: str, dest: Path, timeout: float, desc: str) -> None:
    """Download url to dest through dest.part, resuming a .part left by an earlier run."""
    part = dest.with_name(dest.name + ".part")
    response, offset = _open_response(url, part, timeout)
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    received = offset
    with response, open(part, "ab" if offset else "wb") as fh, tqdm(
        total=total, initial=offset, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None, leave=False
    ) as bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _interrupted(url, part, received, total, exc) from exc
            if not chunk:
                break
            with disk_space(part, (total - received) if total is not None else None):
                fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received < total:
        raise _interrupted(url, part, received, total, "the connection closed early")
    os.replace(part, dest)
