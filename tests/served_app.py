"""What the browser tests and the app's benchmarks share: a `streamlit run app.py` on a free local port,
its memory, and Debian's Chromium."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_ENV = "MVAE_REQUIRE_BROWSER"  # set in CI: a missing browser is then a failure, not a skip
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is an error)")
    pytest.skip(reason)


@contextmanager
def playwright_session():
    """A running Playwright, or a skip (a failure in CI) naming what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.is_file():
        unavailable(f"Debian's Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        yield p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path


# Only a failure bound: a loaded CI machine can take minutes to start the server.
START_TIMEOUT_S = 300


@contextmanager
def served_app(log_path: Path, *options: str):
    """Serves app.py on 127.0.0.1 until the block ends, with extra `--section.option value` pairs."""
    url = f"http://127.0.0.1:{free_port()}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", url.rsplit(":", 1)[1], "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", *options],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)  # the benchmarks time the start-up with this loop
        yield Served(url, proc.pid, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def streamlit_server(log_path: Path):
    """Serves app.py on 127.0.0.1 until the block ends; yields its URL. The server's output goes to log_path."""
    with served_app(log_path) as served:
        yield served.url


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, the most it has ever been) of a process, in MB, from Linux's /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def inflating_png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A black RGBA PNG written row by row, so that a huge one costs little memory here: about a
    thousandth of its decoded size. `extra` goes into an ancillary chunk (it only adds bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + 4 * width)  # filter byte 0, then transparent black
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + (chunk(b"zzZz", extra) if extra else b"") + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
