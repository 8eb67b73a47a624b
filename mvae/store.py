"""The checkpoint file format, read with numpy alone: safetensors for tensors, JSON for everything else,
written atomically. The lean runtime reads checkpoints through this module; `mvae.checkpoint` adds what
needs torch (writing a model, building it, training state).

A checkpoint folder holds `model.safetensors` (weights, with the config, the lean runtime's program and
the metadata in its header) and `model.json` (the same metadata, for people to read; when present, the
loader refuses one that disagrees with the header, so that an edit there is never mistaken for a change
of the model). Nothing is ever unpickled.

Reading checks, in this order, so that a hostile file costs little: the header's length and layout
against the file's size; the metadata's types; what the caller's `spec` asks of the tensors' dtypes and
shapes. Only then are the tensor bytes read, once, and checked against the digest (format 2: it covers
the header's dtypes, shapes and offsets, the metadata, and every byte of the tensors) and for non-finite
values (those checks of the header and the tensors are `mvae.store_checks`). Every failure is a
CheckpointError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .config import model_config_from_dict
from .errors import CheckpointError
from .store_checks import Spec, check_spec, damaged, header_entries, misfit, tensors_of

FORMAT = "mvae-checkpoint"
# 1: the digest covered tensor names and bytes only. 2: it also covers the header and the metadata.
VERSION = 2
OLDEST_VERSION = 1  # format-1 files are still verified by their own rule; `--upgrade` rewrites them
MODEL_FILE = "model.safetensors"
MODEL_JSON = "model.json"
STATE_FILE = "train_state.safetensors"
EVAL_JSON, EVAL_MD = "eval.json", "eval.md"  # the evaluator's report, beside the model it scores
FLOAT_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}  # the dtypes a model may be stored in
MAX_HEADER_BYTES = 16 * 2**20  # the shipped model's header, with its whole training history, is 80 kB
MAX_DATA_BYTES = 2**30  # tensors of a file read without a model to check them against (the judges)
MAX_PARAMETERS = 50_000_000  # 200 MB in float32; the shipped model has 3.8 million
# JSON nesting (header, metadata, model.json): the shipped metadata nests 9 deep (the program's tensor
# shapes); json's recursive parser raises RecursionError near 1,000, without naming the file.
MAX_JSON_DEPTH = 64


if sys.byteorder != "little":  # safetensors stores little-endian bytes, and tensors are viewed in place
    raise ImportError("mvae.checkpoint needs a little-endian machine")


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users, e.g. a container's
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


# -- the digest ---------------------------------------------------------------------------------------------


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class JSONRefused(ValueError):
    """JSON this module will not read, though it may parse: too deep, or a key given twice."""


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a string, escapes and all
_NESTING = np.zeros(256, np.int8)  # what each byte does to the nesting depth outside strings
_NESTING[list(b"[{")], _NESTING[list(b"]}")] = 1, -1


def _unique_keys(pairs: list) -> dict:
    seen = dict(pairs)
    if len(seen) != len(pairs):
        # Readers disagree on a repeated key (Python keeps the last, others the first): refused, so that
        # what the digest covered is what every reader sees.
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise JSONRefused(f"gives the key {twice!r:.60} twice")
    return seen


def read_json(text: bytes | bytearray | str):
    """Parsed JSON, refusing (JSONRefused) nesting past MAX_JSON_DEPTH and repeated keys; ValueError when
    it is not JSON. The depth is measured before parsing, on the brackets outside strings."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    steps = _NESTING[np.frombuffer(_JSON_STRING.sub(b"", raw), np.uint8)]
    depth = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise JSONRefused(f"nests {depth} deep, more than the {MAX_JSON_DEPTH} read here")
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:  # a fallback: the depth is checked above
        raise JSONRefused("nests too deep to read") from None


def _json_problem(exc: ValueError, what: str) -> str:
    return f"its {what} {exc}" if isinstance(exc, JSONRefused) else f"its {what} is not valid JSON"


def digest(entries: dict, meta: dict, data) -> str:
    """Format 2: the tensor entries of the header (dtype, shape, data_offsets), the metadata without its
    own `sha256`, then the data section, in that order."""
    h = hashlib.sha256(f"{FORMAT}/2\n".encode())
    h.update(canonical(entries) + b"\n")
    h.update(canonical({k: v for k, v in meta.items() if k != "sha256"}) + b"\n")
    h.update(data)
    return h.hexdigest()


def _digest_v1(entries: dict, data) -> str:
    """Format 1: tensor names and bytes, by name."""
    h = hashlib.sha256()
    view = memoryview(data)
    for key in sorted(entries):
        begin, end = entries[key]["data_offsets"]
        h.update(key.encode())
        h.update(view[begin:end])
    return h.hexdigest()


def split_header(blob: bytes) -> tuple[dict, int]:
    """The header of safetensors bytes that this module wrote, and where their data section starts."""
    (n,) = struct.unpack("<Q", blob[:8])
    return read_json(blob[8:8 + n]), 8 + n


def seal(serialise: Callable[[dict, dict], bytes], tensors: dict, meta: dict) -> bytes:
    """Safetensors bytes of `tensors` whose metadata carries this format, its version and the digest.
    `serialise(tensors, metadata)` is safetensors' `save` for the library the tensors are of."""
    meta = {k: v for k, v in meta.items() if k != "sha256"}
    # The digest is taken over the metadata as a reader parses it (tuples become lists, keys texts).
    meta = json.loads(json.dumps(dict(meta, format=FORMAT, version=VERSION)))
    draft = serialise(tensors, {"mvae": json.dumps(meta)})
    header, start = split_header(draft)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    meta["sha256"] = digest(entries, meta, memoryview(draft)[start:])
    blob = serialise(tensors, {"mvae": json.dumps(meta)})
    final, _ = split_header(blob)
    if {k: v for k, v in final.items() if k != "__metadata__"} != entries:  # offsets never depend on metadata
        raise RuntimeError("safetensors laid the tensors out differently on the second pass")
    return blob


# -- reading ------------------------------------------------------------------------------------------------


def open_regular(path: Path):
    """`path` opened for reading if it is a regular file; OSError otherwise, or NotARegularFile.

    A named pipe, a socket or a device would block the reader or never end. O_NONBLOCK makes opening a
    pipe return at once (it means nothing to a regular file), and the type is checked on what was opened,
    so a file swapped for a pipe between a check and the open is caught too."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class NotARegularFile(Exception):
    def __init__(self, path: Path, mode: int):
        kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
        self.kind = next((name for test, name in kinds if test(mode)), "not a regular file")
        super().__init__(f"{path} is {self.kind}")


def _open(path: Path):
    try:
        if not path.exists():
            raise CheckpointError(f"No checkpoint at {path}. Train one with `python train.py`, or pass the path of "
                                  f"a checkpoint folder or {MODEL_FILE} file.")
        if path.is_dir():
            raise CheckpointError(f"The checkpoint {path} is a folder, not a file; pass the checkpoint folder that "
                                  f"holds {MODEL_FILE}, or the file itself.")
        return open_regular(path)
    except NotARegularFile as exc:
        raise CheckpointError(f"The checkpoint {path} is {exc.kind}, not a regular file, and is not read; pass "
                              f"the checkpoint folder that holds {MODEL_FILE}, or the file itself.") from None
    except OSError as exc:
        raise CheckpointError(f"The checkpoint {path} could not be read ({exc.strerror or exc}); check that the "
                              "file exists and that this user may read it.") from exc


def _read_exact(f, path: Path, n: int, what: str) -> bytearray:
    buf = bytearray(n)
    try:
        got = f.readinto(buf)
    except OSError as exc:
        raise CheckpointError(f"The checkpoint {path} could not be read ({exc.strerror or exc}).") from exc
    if got != n:
        raise damaged(path, f"its {what} ends early ({got} of {n} bytes); it changed while being read or is truncated")
    return buf


def _parse_meta(path: Path, raw: str) -> dict:
    try:
        meta = read_json(raw)
    except ValueError as exc:
        raise damaged(path, _json_problem(exc, "metadata")) from None
    if not isinstance(meta, dict):
        raise damaged(path, f"its metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise damaged(path, f"its header does not say {FORMAT!r}")
    version = meta.get("version")
    if type(version) is not int:
        raise damaged(path, f"its format version is {version!r:.40}, not a whole number")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {version}); update mvae.")
    if version < OLDEST_VERSION:
        raise damaged(path, f"its format version {version} is older than this loader reads ({OLDEST_VERSION})")
    if not isinstance(meta.get("sha256"), str):
        raise damaged(path, "its metadata has no checksum")
    return meta


def unpack(path: Path, spec: Callable[[dict], Spec | None] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read and verify one safetensors file; every failure is a CheckpointError naming the file.

    `spec(meta)` is called once the metadata is parsed and before any tensor byte is read; it may refuse
    the metadata with a CheckpointError, and it returns what the tensors must be (None: any known dtype,
    within MAX_DATA_BYTES)."""
    path = Path(path)
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise damaged(path, f"it is only {size} bytes long")
        (header_size,) = struct.unpack("<Q", _read_exact(f, path, 8, "header length"))
        if header_size > min(MAX_HEADER_BYTES, size - 8):
            raise damaged(path, f"its header claims {header_size} bytes, more than the file's {size} bytes or the "
                                 f"{MAX_HEADER_BYTES} a header may take")
        try:
            header = read_json(_read_exact(f, path, header_size, "header"))
        except ValueError as exc:
            raise damaged(path, _json_problem(exc, "header")) from None
        data_size = size - 8 - header_size
        entries, raw_meta = header_entries(path, header, data_size)
        meta = _parse_meta(path, raw_meta["mvae"])
        wanted = spec(meta) if spec else None
        if wanted is not None:
            check_spec(path, entries, wanted)
        elif data_size > MAX_DATA_BYTES:
            raise damaged(path, f"its tensors take {data_size} bytes, more than the {MAX_DATA_BYTES} read here")
        data = _read_exact(f, path, data_size, "data")
    if meta["version"] >= 2:
        ok = set(raw_meta) == {"mvae"} and meta["sha256"] == digest(entries, meta, data)
    else:
        ok = meta["sha256"] == _digest_v1(entries, data)
    if not ok:
        raise damaged(path, "its header, metadata or weights do not match their checksum (a flipped or lost "
                             "byte, or an edit)")
    tensors = tensors_of(path, entries, data)
    _check_json_copy(path, meta)
    return tensors, meta


def _check_json_copy(path: Path, meta: dict) -> None:
    """The JSON copy of the metadata beside the file (model.json), when there is one, must say the same,
    except in `info`, the training record (metrics, history): it decides nothing, and a run killed between
    the two writes of a save leaves that copy one save behind."""
    copy = path.with_suffix(".json")
    try:
        if not copy.exists():
            return
        with open_regular(copy) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_HEADER_BYTES:
                raise CheckpointError(f"{copy} is larger than any metadata ({size} bytes). Delete it, or "
                                      "re-download the checkpoint folder.")
            text = f.read(MAX_HEADER_BYTES + 1)
    except (OSError, NotARegularFile) as exc:
        raise CheckpointError(f"{copy}, the readable copy of {path.name}'s metadata, could not be read ({exc}). "
                              "Delete it, or re-download the checkpoint folder.") from exc
    try:
        said = read_json(text)
    except JSONRefused as exc:
        raise CheckpointError(f"{copy}, the readable copy of {path.name}'s metadata, is refused: it {exc}. Delete it, "
                              "or re-download the checkpoint folder.") from None
    except ValueError:  # not JSON, or not UTF-8: said to differ below
        said = None
    ours = {k: v for k, v in meta.items() if k not in ("format", "version", "sha256", "info")}
    if isinstance(said, dict):
        said = {k: v for k, v in said.items() if k != "info"}
    if not isinstance(said, dict) or canonical(said) != canonical(ours):
        keys = sorted(k for k in set(ours) | set(said if isinstance(said, dict) else {})
                      if not isinstance(said, dict) or canonical(said.get(k)) != canonical(ours.get(k)))
        raise CheckpointError(f"{copy} does not match the metadata inside {path} (it differs in {keys[:5]}); it "
                              f"is only a readable copy, so it was edited or belongs to another checkpoint. "
                              f"Restore it (re-download the checkpoint folder) or delete it.")


# -- models -------------------------------------------------------------------------------------------------


def model_path(path) -> Path:
    path = Path(path)
    try:
        folder = path.is_dir()
    except OSError:  # unreadable: unpack says so, naming the path
        return path
    return path / MODEL_FILE if folder or path.suffix != ".safetensors" else path


def model_config(path: Path, data):
    try:
        return model_config_from_dict(data)
    except ValueError as exc:
        raise misfit(path, f"its model_config is refused ({exc})") from None
