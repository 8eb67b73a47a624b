"""The downloader against a local HTTP server that serves fixture files made here."""

import dataclasses
import errno
import gzip
import hashlib
import io
import os
import threading
import urllib.parse
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mvae.data import download, fetch
from mvae.data.download import MANIFEST, Output, arrays_sha256, download_all, main, raw_files, recordings_sha256
from mvae.data.formats import prepare_images, write_hoda_cdb, write_idx
from mvae.errors import DataError

KANNADA_SPLITS = {"train": 200, "test": 20, "dig": 10}
FARSI_SPLITS = {"train": "Train 60000.cdb", "test": "Test 20000.cdb", "remaining": "RemainingSamples.cdb"}
FSDD_ZIP = raw_files(MANIFEST["fsdd"])[0]
TRAIN_X = "X_kannada_MNIST_train-idx3-ubyte.gz"


class Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours Range unless told not to; can drop or stall a response midway."""

    def do_GET(self):
        srv = self.server
        path = urllib.parse.unquote(self.path)
        asked = self.headers.get("Range")
        srv.log.append((path, asked))
        data = srv.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if asked and not srv.ignore_range:
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path in srv.drop_once or path in srv.stall:
            srv.drop_once.discard(path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if path in srv.stall:
                srv.release.wait(10)
            return  # HTTP/1.0: returning closes the connection, short of Content-Length
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.files, srv.log, srv.drop_once, srv.stall = {}, [], set(), set()
    srv.ignore_range = False
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.delenv(download.DATA_DIR_ENV, raising=False)


def wav_bytes(n_samples, seed):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.random.default_rng(seed).integers(-3000, 3000, n_samples, dtype=np.int16).tobytes())
    return buf.getvalue()


@pytest.fixture
def fixtures(server):
    """Serve small raw files under the real names; return what each prepared file must hold."""
    rng = np.random.default_rng(0)
    expected = {}
    for split, n in KANNADA_SPLITS.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        x_name, y_name = MANIFEST["kannada"].outputs[f"{split}.npz"].sources
        server.files[f"/kannada/{x_name}"] = gzip.compress(write_idx(images))
        server.files[f"/kannada/{y_name}"] = gzip.compress(write_idx(labels))
        expected[f"kannada/{split}.npz"] = (images, labels)
    for split, name in FARSI_SPLITS.items():
        raw = [(rng.random((rng.integers(5, 40), rng.integers(3, 30))) < 0.5).astype(np.uint8) for _ in range(6)]
        labels = np.array([3, 0, 9, 9, 1, 4], dtype=np.uint8)
        server.files[f"/farsi/{name}"] = write_hoda_cdb(raw, labels)
        expected[f"farsi/{split}.npz"] = (raw, labels)
    wavs = {
        f"{d}_{speaker}_{i}.wav": wav_bytes(400 + 37 * d + i, seed=d * 10 + i)
        for d in (0, 7)
        for speaker in ("george", "theo")
        for i in (0, 12)
    }
    top = f"free-spoken-digit-dataset-{download.FSDD_COMMIT}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(f"{top}/README.md", "readme")
        archive.writestr(f"{top}/recordings/", "")
        archive.writestr(f"{top}/utils/not_a_recording.wav", b"RIFF")
        for name, data in wavs.items():
            archive.writestr(f"{top}/recordings/{name}", data)
    server.files[f"/fsdd/{FSDD_ZIP}"] = buf.getvalue()
    expected["fsdd/recordings"] = wavs
    return expected


def manifest_for(expected, **pins):
    """The real manifest with the fixtures' content hashes pinned where the real one pins them."""
    kannada = MANIFEST["kannada"]
    outputs = {
        out: dataclasses.replace(spec, sha256=spec.sha256 and arrays_sha256(*expected[f"kannada/{out}"]))
        for out, spec in kannada.outputs.items()
    }
    recordings = Output((FSDD_ZIP,), recordings_sha256(expected["fsdd/recordings"]))
    return {
        "kannada": dataclasses.replace(kannada, outputs=outputs, **pins),
        "farsi": MANIFEST["farsi"],
        "fsdd": dataclasses.replace(MANIFEST["fsdd"], outputs={"recordings": recordings}),
    }


def run(server, tmp_path, expected, **kwargs):
    kwargs.setdefault("manifest", manifest_for(expected))
    base_urls = {name: f"{server.url}/{name}" for name in MANIFEST}
    return download_all(tmp_path, base_urls=base_urls, **kwargs)


def assert_kannada(tmp_path, expected):
    for split in KANNADA_SPLITS:
        with np.load(tmp_path / "kannada" / f"{split}.npz") as npz:
            assert sorted(npz.files) == ["images", "labels"]
            images, labels = expected[f"kannada/{split}.npz"]
            assert npz["images"].dtype == np.uint8 and npz["labels"].dtype == np.uint8
            np.testing.assert_array_equal(npz["images"], images)  # 28x28 idx images are stored as they are
            np.testing.assert_array_equal(npz["labels"], labels)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_content_hashes_follow_their_definitions():
    files = {"b.wav": b"second", "a.wav": b"first"}
    lines = "".join(f"{n} {hashlib.sha256(files[n]).hexdigest()}\n" for n in ("a.wav", "b.wav"))
    assert recordings_sha256(files) == hashlib.sha256(lines.encode()).hexdigest()
    images, labels = np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8), np.array([4, 2], np.uint8)
    assert arrays_sha256(images, labels) == hashlib.sha256(images.tobytes() + bytes([4, 2])).hexdigest()


def test_download_all_writes_the_prepared_format(server, tmp_path, fixtures):
    assert run(server, tmp_path, fixtures) == {"kannada": "prepared", "farsi": "prepared", "fsdd": "prepared"}

    assert_kannada(tmp_path, fixtures)
    for split in FARSI_SPLITS:
        raw, labels = fixtures[f"farsi/{split}.npz"]
        with zipfile.ZipFile(tmp_path / "farsi" / f"{split}.npz") as archive:
            assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
        with np.load(tmp_path / "farsi" / f"{split}.npz") as npz:
            assert npz["images"].shape == (6, 28, 28) and npz["images"].dtype == np.uint8
            np.testing.assert_array_equal(npz["labels"], labels)
            np.testing.assert_array_equal(npz["images"], prepare_images(raw))
            ys, xs = np.indices((28, 28))
            mass = npz["images"].astype(np.float64)
            total = mass.sum(axis=(1, 2))
            np.testing.assert_allclose((mass * ys).sum(axis=(1, 2)) / total, 14.0, atol=0.5)
            np.testing.assert_allclose((mass * xs).sum(axis=(1, 2)) / total, 14.0, atol=0.5)
    recordings = tmp_path / "fsdd" / "recordings"
    assert sorted(p.name for p in recordings.iterdir()) == sorted(fixtures["fsdd/recordings"])
    for name, data in fixtures["fsdd/recordings"].items():
        assert (recordings / name).read_bytes() == data

    # Raw files are gone; the hash of each first download stays behind, in sha256sum format.
    downloads = tmp_path / "downloads"
    assert all(name.endswith(".sha256") for name in files_under(downloads))
    sidecar = (downloads / "farsi" / "Test 20000.cdb.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(server.files['/farsi/Test 20000.cdb']).hexdigest()}  Test 20000.cdb\n"
    assert len(files_under(downloads)) == 6 + 3 + 1

    # A second run finds every set complete and asks the server for nothing.
    requests = len(server.log)
    assert run(server, tmp_path, fixtures) == {"kannada": "present", "farsi": "present", "fsdd": "present"}
    assert len(server.log) == requests


def test_a_raw_file_with_the_wrong_hash_is_deleted(server, tmp_path, fixtures):
    bad = "X_kannada_MNIST_test-idx3-ubyte.gz"
    actual = hashlib.sha256(server.files[f"/kannada/{bad}"]).hexdigest()
    manifest = manifest_for(fixtures, raw_sha256={bad: "0" * 64})
    with pytest.raises(DataError) as info:
        run(server, tmp_path, fixtures, manifest=manifest, only=["kannada"])
    message = str(info.value)
    assert bad in message and "0" * 64 in message and actual in message and "Re-run the command" in message
    raw_dir = tmp_path / "downloads" / "kannada"
    assert not (raw_dir / bad).exists() and not (raw_dir / f"{bad}.part").exists()
    assert not list((tmp_path / "kannada").glob("*.npz"))


def test_prepared_content_with_the_wrong_hash_is_not_written(server, tmp_path, fixtures):
    manifest = manifest_for(fixtures)
    outputs = dict(manifest["kannada"].outputs)
    outputs["dig.npz"] = dataclasses.replace(outputs["dig.npz"], sha256="f" * 64)
    manifest["kannada"] = dataclasses.replace(manifest["kannada"], outputs=outputs)
    with pytest.raises(DataError, match="decoded for dig.npz does not match") as info:
        run(server, tmp_path, fixtures, manifest=manifest, only=["kannada"])
    images, labels = fixtures["kannada/dig.npz"]
    assert "f" * 64 in str(info.value) and arrays_sha256(images, labels) in str(info.value)
    assert not (tmp_path / "kannada" / "dig.npz").exists()
    assert not list((tmp_path / "downloads" / "kannada").glob("*dig*"))


def test_the_command_checks_the_real_pinned_recordings_hash(server, tmp_path, fixtures, capsys):
    # The fixture recordings are not FSDD, so the real manifest's tree hash must reject them.
    rc = main(["--data-dir", str(tmp_path), "--only", "fsdd", "--mirror", server.url, "--timeout", "5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert MANIFEST["fsdd"].outputs["recordings"].sha256 in err
    assert recordings_sha256(fixtures["fsdd/recordings"]) in err
    assert not (tmp_path / "fsdd" / "recordings").exists()
    assert files_under(tmp_path / "downloads") == []


def test_the_command_reads_data_dir_and_mirror_from_the_environment(server, tmp_path, fixtures, monkeypatch, capsys):
    monkeypatch.setenv(download.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(download.MIRROR_ENV, server.url + "/")
    assert main(["--only", "farsi"]) == 0  # the real manifest pins nothing for Hoda
    assert sorted(p.name for p in (tmp_path / "farsi").iterdir()) == ["remaining.npz", "test.npz", "train.npz"]
    assert "farsi: prepared" in capsys.readouterr().out
    assert {path for path, _ in server.log} == {f"/farsi/{name}" for name in FARSI_SPLITS.values()}


def test_the_command_defaults_to_the_loaders_data_folder(server, tmp_path, fixtures, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--only", "farsi", "--mirror", server.url]) == 0
    assert (tmp_path / "data" / "farsi" / "test.npz").is_file()


def test_a_dropped_connection_leaves_a_part_and_the_next_run_resumes(server, tmp_path, fixtures):
    size = len(server.files[f"/kannada/{TRAIN_X}"])
    server.drop_once.add(f"/kannada/{TRAIN_X}")
    with pytest.raises(DataError, match="re-run the command to resume"):
        run(server, tmp_path, fixtures, only=["kannada"])
    raw_dir = tmp_path / "downloads" / "kannada"
    assert (raw_dir / f"{TRAIN_X}.part").stat().st_size == size // 2
    assert not (raw_dir / TRAIN_X).exists()
    assert not (tmp_path / "kannada").exists() or not list((tmp_path / "kannada").iterdir())

    assert run(server, tmp_path, fixtures, only=["kannada"]) == {"kannada": "prepared"}
    assert (f"/kannada/{TRAIN_X}", f"bytes={size // 2}-") in server.log
    assert_kannada(tmp_path, fixtures)
    assert not list(raw_dir.glob("*.part"))


def test_a_server_that_ignores_range_still_completes(server, tmp_path, fixtures):
    server.drop_once.add(f"/kannada/{TRAIN_X}")
    server.ignore_range = True
    with pytest.raises(DataError):
        run(server, tmp_path, fixtures, only=["kannada"])
    assert run(server, tmp_path, fixtures, only=["kannada"]) == {"kannada": "prepared"}
    assert sum(1 for path, asked in server.log if path == f"/kannada/{TRAIN_X}" and asked) == 1
    assert_kannada(tmp_path, fixtures)


def test_a_part_the_server_cannot_continue_is_dropped(server, tmp_path, fixtures):
    # A .part as long as the file or longer (a run stopped just before its rename, or a changed source).
    data = server.files[f"/kannada/{TRAIN_X}"]
    raw_dir = tmp_path / "downloads" / "kannada"
    raw_dir.mkdir(parents=True)
    (raw_dir / f"{TRAIN_X}.part").write_bytes(data + b"junk")
    assert run(server, tmp_path, fixtures, only=["kannada"]) == {"kannada": "prepared"}
    asked = [rng for path, rng in server.log if path == f"/kannada/{TRAIN_X}"]
    assert asked == [f"bytes={len(data) + 4}-", None]
    assert_kannada(tmp_path, fixtures)


def test_a_silent_connection_times_out(server, tmp_path, fixtures):
    server.stall.add(f"/kannada/{TRAIN_X}")
    with pytest.raises(DataError, match="timed out.*re-run the command to resume"):
        run(server, tmp_path, fixtures, only=["kannada"], timeout=0.3)
    assert (tmp_path / "downloads" / "kannada" / f"{TRAIN_X}.part").exists()


def test_an_unreachable_source_points_to_a_mirror(tmp_path, fixtures):
    import socket

    with socket.socket() as closed:  # a port that was free a moment ago: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    base_urls = {name: f"http://127.0.0.1:{port}/{name}" for name in MANIFEST}
    with pytest.raises(DataError, match=r"Could not download .*--mirror URL.*URL/<set>/<file name>"):
        download_all(tmp_path, only=["kannada"], base_urls=base_urls, manifest=manifest_for(fixtures), timeout=5)


def test_a_changed_source_fails_its_recorded_hash_until_forced(server, tmp_path, fixtures):
    run(server, tmp_path, fixtures, only=["kannada"])
    rng = np.random.default_rng(5)
    changed = rng.integers(0, 256, size=(KANNADA_SPLITS["train"], 28, 28), dtype=np.uint8)
    server.files[f"/kannada/{TRAIN_X}"] = gzip.compress(write_idx(changed))
    (tmp_path / "kannada" / "train.npz").unlink()

    with pytest.raises(DataError, match="--force") as info:
        run(server, tmp_path, fixtures, only=["kannada"])
    assert f"{TRAIN_X}.sha256" in str(info.value)
    assert not (tmp_path / "kannada" / "train.npz").exists()

    assert run(server, tmp_path, fixtures, only=["kannada"], force=True) == {"kannada": "prepared"}
    with np.load(tmp_path / "kannada" / "train.npz") as npz:
        np.testing.assert_array_equal(npz["images"], changed)


class FullDisk:
    """An open file whose writes fail as on a full disk once `allowed` bytes went through."""

    def __init__(self, fh, allowed):
        self.fh, self.allowed = fh, allowed

    def write(self, data):
        if len(data) > self.allowed:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.allowed -= len(data)
        return self.fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.mark.parametrize("where", ["download", "npz"])
def test_a_full_disk_says_how_much_space_is_needed(server, tmp_path, fixtures, monkeypatch, where):
    def fake_open(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return FullDisk(fh, allowed=1000) if "w" in mode and str(path).endswith(".part") else fh

    def fake_fdopen(fd, mode="r", *args, **kwargs):  # the atomic writer's temporary file
        fh = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(fh, allowed=1000) if "w" in mode else fh

    real_fdopen = os.fdopen
    if where == "download":
        monkeypatch.setattr(fetch, "open", fake_open, raising=False)
    else:
        monkeypatch.setattr(os, "fdopen", fake_fdopen)
    with pytest.raises(DataError, match="disk is full") as info:
        run(server, tmp_path, fixtures, only=["kannada"])
    message = str(info.value)
    if where == "download":
        # The first download is the 200-image train file, about 0.16 MB of incompressible pixels.
        need = len(server.files[f"/kannada/{TRAIN_X}"])
        assert f"needs about {need / 1e6:.1f} MB more" in message and TRAIN_X in message
    else:
        assert "train.npz" in message and "needs about 0.2 MB more" in message
    assert "MB are free" in message
    assert not (tmp_path / "kannada").exists() or not list((tmp_path / "kannada").iterdir())
    raw = {p.name for p in (tmp_path / "downloads" / "kannada").iterdir()}
    if where == "download":
        assert raw == {f"{TRAIN_X}.part"}  # never a file that looks complete
    else:
        assert len(raw) == 6 and not any(name.endswith(".part") for name in raw)  # kept for the next run

    monkeypatch.undo()
    assert run(server, tmp_path, fixtures, only=["kannada"]) == {"kannada": "prepared"}
    assert_kannada(tmp_path, fixtures)
