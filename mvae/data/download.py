"""Download the registered modalities' datasets from their canonical sources and write them in the prepared
format.

    python -m mvae.data.download --data-dir DIR [--only SET ...] [--force] [--mirror URL]

A set is a modality's folder; which sets there are, where each comes from and what it becomes is each
modality's `download` entry in mvae.registry. The prepared format, which the loaders read:

    DIR/<folder>/<stem>.npz    images uint8 (N, 28, 28), white ink on black; labels uint8 (N,)
    DIR/<folder>/recordings/{digit}_{speaker}_{index}.wav   the original files, byte for byte

Raw downloads go to DIR/downloads/<set>/ and are removed once their set is prepared. A download that
stops midway stays there as `<name>.part` and the next run resumes it (mvae.data.fetch). Where no SHA-256
of a raw file is pinned, the hash of its first download that prepared successfully is recorded next to it
as `<name>.sha256` (sha256sum format) and later downloads must match it.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

from tqdm import tqdm

from .. import registry
from ..errors import DataError, run_cli
from ..registry import FSDD_COMMIT, HODA_COMMIT, KANNADA_COMMIT, DataSet, Output
from .fetch import MIRROR_ENV, fetch, file_sha256, remove, write_atomic
from .prepare import arrays_sha256, check_sha, decode, recordings_sha256
from .sources import resolve_data_dir

__all__ = ["DATA_DIR_ENV", "DOWNLOADS", "FSDD_COMMIT", "HODA_COMMIT", "KANNADA_COMMIT", "MANIFEST", "MIRROR_ENV",
           "TIMEOUT_S", "DataSet", "Output", "arrays_sha256", "download_all", "main", "raw_files",
           "recordings_sha256"]

DATA_DIR_ENV = "MVAE_DATA_DIR"
DOWNLOADS = "downloads"
TIMEOUT_S = 60.0

# The sets, keyed by the folder each is prepared into; a modality without a download has no set.
MANIFEST: dict[str, DataSet] = {m.source.folder: m.download for m in registry.MODALITIES.values() if m.download}


def _sources(outputs: Iterable[Output]) -> list[str]:
    """The raw files the outputs are made from, each once, in order."""
    return list(dict.fromkeys(name for out in outputs for name in out.sources))


def raw_files(dataset: DataSet) -> list[str]:
    """The raw files a set is made from, each once, in order."""
    return _sources(dataset.outputs.values())


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


def _fetch_raw(name: str, dataset: DataSet, raw_dir: Path, needed: list[str], base_url: str,
               timeout: float) -> dict[str, str]:
    """Downloads the raw files not already there and checks each; returns their hashes."""
    hashes = {}
    for raw_name in needed:
        path = raw_dir / raw_name
        url = base_url + urllib.parse.quote(raw_name)
        if not path.exists():
            fetch(url, path, timeout, desc=f"{name}/{raw_name}")
        hashes[raw_name] = file_sha256(path)
        expected, advice = _expected_raw_sha(dataset, raw_dir, raw_name)
        check_sha(f"{raw_name} (from {url})", expected, hashes[raw_name], advice, bad=path)
    return hashes


def _download_set(name: str, dataset: DataSet, data_dir: Path, base_url: str, force: bool, timeout: float) -> str:
    out_dir, raw_dir = data_dir / name, data_dir / DOWNLOADS / name
    if force:
        for out in dataset.outputs:
            remove(out_dir / out)
        remove(raw_dir)
    missing = {out: spec for out, spec in dataset.outputs.items() if not (out_dir / out).exists()}
    if not missing:
        tqdm.write(f"{name}: already prepared in {out_dir} (--force prepares it again)", file=sys.stderr)
        return "present"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(parents=True, exist_ok=True)

    needed = _sources(missing.values())
    hashes = _fetch_raw(name, dataset, raw_dir, needed, base_url, timeout)
    for out, spec in missing.items():
        try:
            write = decode(dataset, out, spec, raw_dir)
        except DataError:
            # A file that cannot be decoded is bad: keeping it would only fail the same way next time.
            for src in spec.sources:
                (raw_dir / src).unlink(missing_ok=True)
            raise
        write(out_dir / out)
        tqdm.write(f"{name}: wrote {out_dir / out}", file=sys.stderr)

    for raw_name in needed:
        if raw_name not in dataset.raw_sha256 and not _sidecar(raw_dir, raw_name).exists():
            write_atomic(_sidecar(raw_dir, raw_name), f"{hashes[raw_name]}  {raw_name}\n".encode())
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


def _parser() -> argparse.ArgumentParser:
    described = ", ".join(f"{m.title} ({m.source.folder})" for m in registry.MODALITIES.values() if m.download)
    parser = argparse.ArgumentParser(
        prog="python -m mvae.data.download",
        description=f"Download the datasets of {described} from their canonical sources, check them, and write "
        "them in the format the training code reads.",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
