"""A cache of precomputed banks on disk, so that a second training run does not make them again.

Making the speech bank of the training split (reading every recording, then `speech_aug_copies` pitch and
speed changes of each through a phase vocoder) takes minutes on a CPU: about 2,700 recordings at 13–17 a
second with the shipped recipe's 4 copies. The result is a pure function of the recordings, the audio
settings, the augmentation settings, the seed and this code, so it is stored under a key made of all of them:

- the recordings: each file's name, size and modification time (a changed or replaced file misses);
- the settings: the whole AudioConfig, the copies, the strength, the seed and the split;
- the code: BANK_CACHE_VERSION, and the versions of numpy and torch, whose STFTs and resamplers make it.

A file is written atomically (mvae.store.atomic_write), in the npz format, and read back with
allow_pickle=False: a cache file is data, never code. A file that cannot be read, or that holds anything but
the arrays its key promises, is a miss: the bank is made again and the file replaced. The folder is the
user's cache, outside the repository: $MVAE_CACHE_DIR, else $XDG_CACHE_HOME/mvae, else ~/.cache/mvae.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..store import atomic_write, canonical

CACHE_ENV = "MVAE_CACHE_DIR"
# Bump when the making of a bank changes in a way its inputs do not show (banks.py, augment.py, the front
# end's log-mel): every older cache file then misses.
BANK_CACHE_VERSION = 1
# A bank of the full training split with 4 copies is about 220 MB (13,500 log-mels of 64 x 64 float32): the
# newest few are kept, enough for a run, its test split and a changed setting or two, and older ones deleted.
MAX_CACHED_BANKS = 4
SUFFIX = ".npz"
SUBFOLDER = "banks"  # pruning deletes only files of this module's naming, in a folder of its own
CACHED_NAME = re.compile(r"^[a-z0-9_]+-[0-9a-f]{32}\.npz$")  # <modality><split>-<key>


def default_cache_dir() -> Path:
    """$MVAE_CACHE_DIR, else $XDG_CACHE_HOME/mvae, else ~/.cache/mvae."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mvae"


def recordings_fingerprint(paths: Sequence[Path], root: Path) -> list:
    """Each file's name (relative to the data folder, so that a moved data folder still hits), size and
    modification time."""
    out = []
    for path in paths:
        st = Path(path).stat()
        try:
            name = Path(path).relative_to(root).as_posix()
        except ValueError:
            name = Path(path).name
        out.append([name, st.st_size, st.st_mtime_ns])
    return out


def cache_key(parts: dict) -> str:
    versions = {"bank_cache": BANK_CACHE_VERSION, "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # a bank is made with torch; without it there is nothing to cache
        pass
    return hashlib.sha256(canonical({"versions": versions, **parts})).hexdigest()


@dataclass
class BankCache:
    """How a training run makes its banks: where precomputed ones are kept (folder None: nowhere, every run
    makes them), how their making is announced (`say`, one line each; print by default, so that a run without
    progress bars is not silent) and how many items the run will draw from each (`draws`, when known: a bank
    makes no more augmented copies than that many draws can reach, mvae.data.banks.useful_copies)."""

    folder: Path | None = None
    say: Callable[[str], None] = print
    draws: int | None = None

    def path(self, name: str, key: str) -> Path | None:
        return None if self.folder is None else Path(self.folder) / SUBFOLDER / f"{name}-{key[:32]}{SUFFIX}"

    def load(self, name: str, key: str, labels: np.ndarray, item_shape: tuple[int, ...],
             arrays: tuple[str, ...] = ("items",)) -> tuple[np.ndarray, ...] | None:
        """The `arrays` (items, and targets where the bank has them) stored under `key`, or None: absent,
        unreadable, or not what the key promises (`labels`, in order, and float32 arrays of `item_shape`,
        all finite)."""
        path = self.path(name, key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored_key, stored_labels = str(data["key"]), data["labels"]
                found = tuple(data[a] for a in arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            self.say(f"  the cached bank {path} cannot be read ({type(exc).__name__}); making it again")
            return None
        if (stored_key != key or not np.array_equal(stored_labels, labels)
                or any(a.dtype != np.float32 or a.shape != (len(labels), *item_shape) or not np.isfinite(a).all()
                       for a in found)):
            self.say(f"  the cached bank {path} is not the one this run needs; making it again")
            return None
        return found

    def store(self, name: str, key: str, items: np.ndarray, labels: np.ndarray,
              targets: np.ndarray | None = None) -> Path | None:
        """Writes the bank; a cache that cannot be written (a full disk, a read-only home) costs the next run
        the time again, not this run its result."""
        path = self.path(name, key)
        if path is None:
            return None
        buf = io.BytesIO()
        extra = {} if targets is None else {"targets": np.ascontiguousarray(targets, np.float32)}
        np.savez(buf, key=np.array(key), items=np.ascontiguousarray(items, np.float32),
                 labels=np.asarray(labels, np.int64), **extra)
        try:
            atomic_write(path, buf.getvalue())
        except OSError as exc:
            self.say(f"  could not cache the bank in {path.parent} ({exc.strerror or exc}); the next run makes "
                     "it again")
            return None
        self._prune(path)
        return path

    def _prune(self, keep: Path) -> None:
        cached = []
        for path in keep.parent.iterdir():
            try:
                if path != keep and CACHED_NAME.match(path.name):
                    cached.append((path.stat().st_mtime_ns, path))
            except OSError:  # removed meanwhile by another run
                continue
        for _, old in sorted(cached, reverse=True)[MAX_CACHED_BANKS - 1:]:
            old.unlink(missing_ok=True)
