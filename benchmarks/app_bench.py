"""The app's cold start and its server's memory, measured with `streamlit run` and a headless Chromium.

Cold start is the time from launching `streamlit run app.py` until a browser that asked for the home page
has it rendered: the server up, the script run, the model loaded. The memory is the server's resident set
after one drawing on the Draw page and one recording on the Speak page (Chromium's fake microphone plays
a spoken digit).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.served_app import CHROMIUM, LAUNCH_ARGS, rss_mb, served_app

# Chromium's fake microphone, which plays a file, with its permission prompt answered.
MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_S = 120


def wait_rendered(page) -> None:
    """The script has finished its run and the page's title is on screen."""
    page.locator("h1").first.wait_for()
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def predicted(page):
    return page.locator("[data-testid='stMetric']").filter(has_text="Predicted digit") \
        .locator("[data-testid='stMetricValue']")


def draw_a_digit(page, url: str) -> str:
    page.goto(f"{url}/draw")
    pad = page.locator("canvas.upper-canvas")
    pad.wait_for()
    box = pad.bounding_box()
    x, y = box["x"] + 140, box["y"] + 50
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x + 0.4 * i, y + 9 * i, steps=2)
    page.mouse.up()
    predicted(page).wait_for()
    return predicted(page).inner_text()


def say_a_digit(page, url: str) -> str:
    page.goto(f"{url}/speak")
    page.get_by_role("button", name="Record").click()
    page.wait_for_timeout(1500)
    page.locator("[data-testid='stAudioInputActionButton']").click()
    predicted(page).wait_for()
    return predicted(page).inner_text()


def fake_microphone(folder: Path) -> tuple[Path, str]:
    """A spoken digit, then silence: Chromium loops the file, so one take holds one digit."""
    data_dir = os.environ.get("MVAE_DATA_DIR")
    path = Path(data_dir or "") / "fsdd" / "recordings" / "5_theo_1.wav"
    if data_dir and path.is_file():
        wave, rate = sf.read(path, dtype="float32")
        what = f"FSDD {path.name}"
    else:
        from tests.helpers import tone

        wave, rate, what = tone(5, np.random.default_rng(0))[800:], 8000, "a synthetic tone"
    out = folder / "mic.wav"
    sf.write(out, np.concatenate([wave, np.zeros(3 * rate, np.float32)]), rate, subtype="PCM_16")
    return out, what


def measure_app(root: Path, starts: int, target_start_s: float, target_rss_mb: float, Row) -> list:
    """Rows of the table, made with `Row(name, result, target, met, notes)`."""
    if not (root / "app.py").is_file():
        return [Row("3. the app", "not measured", "", None, "there is no app.py")]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if sync_playwright is None or not CHROMIUM.is_file():
            return served_only(root, tmp, starts, target_start_s, Row)
        mic, what = fake_microphone(tmp)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                        args=LAUNCH_ARGS + MIC_ARGS + [f"--use-file-for-fake-audio-capture={mic}"])
            try:
                return with_browser(root, tmp, browser, starts, target_start_s, target_rss_mb, what, Row)
            finally:
                browser.close()


def with_browser(root, tmp, browser, starts, target_start_s, target_rss_mb, mic_source, Row) -> list:
    up, rendered = [], []
    for i in range(starts):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.grant_permissions(["microphone"])
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_S * 1000)
        started = time.perf_counter()
        try:
            with served_app(tmp / f"server-{i}.log") as server:
                up.append(time.perf_counter() - started)
                page.goto(server.url)
                wait_rendered(page)
                rendered.append(time.perf_counter() - started)
                if i == starts - 1:  # the last server also serves a drawing and a recording
                    before = rss_mb(server.pid)[0]
                    drawn = draw_a_digit(page, server.url)
                    heard = say_a_digit(page, server.url)
                    after, peak = rss_mb(server.pid)
        finally:
            context.close()
    start = statistics.median(rendered)
    rows = [
        Row("3a. app cold start: `streamlit run` → home page rendered", f"{start:.1f} s",
            f"≤ {target_start_s:g} s", start <= target_start_s,
            f"median of {starts}; the server answered its health check after {statistics.median(up):.1f} s; "
            "rendered = the home page's script finished in headless Chromium (the model loaded)"),
        Row("3b. server memory after a drawing and a recording", f"{after:.0f} MB RSS", f"≤ {target_rss_mb:g} MB",
            after <= target_rss_mb,
            f"peak {peak:.0f} MB, {before:.0f} MB after the home page; drawn digit read as {drawn}, "
            f"recording ({mic_source} through Chromium's fake microphone) heard as {heard}"),
    ]
    return rows


def served_only(root, tmp, starts, target_start_s, Row) -> list:
    """Without a browser: the time until the server serves the page's HTML; the memory needs a browser."""
    times = []
    for i in range(starts):
        started = time.perf_counter()
        with served_app(tmp / f"server-{i}.log") as server, urllib.request.urlopen(server.url, timeout=30):
            times.append(time.perf_counter() - started)
    start = statistics.median(times)
    return [
        Row("3a. app cold start: `streamlit run` → first page served", f"{start:.1f} s", f"≤ {target_start_s:g} s",
            start <= target_start_s, f"median of {starts}; HTML only: no Chromium at {CHROMIUM} to render it"),
        Row("3b. server memory after a drawing and a recording", "not measured", "", None,
            f"needs Chromium at {CHROMIUM} and playwright"),
    ]
