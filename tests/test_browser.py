"""The app in a real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

One test draws digits with the mouse, one speaks a real test recording into Chromium's fake microphone.
Each checks the digit the page shows. Screenshots of failures (and the server's log) go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.served_app import CHROMIUM, LAUNCH_ARGS, playwright_session, streamlit_server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
RECORDING = "5_theo_1.wav"  # a test-split file (index 0-4)
TRACED = ("farsi", 2)  # a real test digit, redrawn stroke by stroke
# The 1 s goal is for an otherwise idle 2-core machine; this bound only catches a page that hangs.
MAX_LATENCY_S = float(os.environ.get("MVAE_MAX_LATENCY_S", "5"))
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def playwright():
    with playwright_session() as p:
        yield p


@pytest.fixture(scope="module")
def server(playwright, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    with streamlit_server(log_path) as url:
        yield url, log_path


@pytest.fixture(scope="module")
def fake_mic(real_data, tmp_path_factory) -> Path:
    """The real recording once, then silence: Chromium loops the file, so a take holds one spoken digit."""
    wave, rate = sf.read(real_data / "fsdd" / "recordings" / RECORDING, dtype="float32")
    assert np.abs(wave[:80]).max() > 0, "Chromium's fake microphone needs a file that starts with sound"
    path = tmp_path_factory.mktemp("mic") / "digit.wav"
    sf.write(path, np.concatenate([wave, np.zeros(3 * rate, np.float32)]), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(playwright, fake_mic):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                         args=LAUNCH_ARGS + FAKE_MIC_ARGS + [f"--use-file-for-fake-audio-capture={fake_mic}"])
    yield browser
    browser.close()


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["microphone"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    failed_before = request.session.testsfailed
    yield page
    # The call phase has been reported by now, so a failure of this test shows in the session's count.
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"{request.node.name}-server.log").write_text(server[1].read_text())
    context.close()


def predicted(page):
    return page.locator("[data-testid='stMetric']").filter(has_text="Predicted digit") \
        .locator("[data-testid='stMetricValue']")


def settle(page) -> None:
    """Waits until the script has finished running and the components have had a moment to initialise."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    page.wait_for_timeout(500)


def stroke(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=2)
    page.mouse.up()


def pad_origin(page) -> tuple[float, float]:
    pad = page.locator("canvas.upper-canvas")
    pad.wait_for()
    settle(page)
    box = pad.bounding_box()
    assert round(box["width"]) == 280 and round(box["height"]) == 280, box
    return box["x"], box["y"]


def timed_answer(page, draw) -> tuple[str, float]:
    """Draws on an empty pad and measures the time from the last mouse-up until the digit is shown."""
    draw()
    start = time.perf_counter()
    predicted(page).wait_for()
    return predicted(page).inner_text(), time.perf_counter() - start


def trace(page, image: np.ndarray) -> None:
    """Redraws a 28×28 digit with the mouse: one horizontal stroke per run of ink in each pixel row."""
    x0, y0 = pad_origin(page)
    ink = image > 100
    for row in range(28):
        cols = np.flatnonzero(ink[row])
        if not len(cols):
            continue
        runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        for run in runs:
            y = y0 + 10 * row + 5
            stroke(page, [(x0 + 10 * float(run[0]) + 3, y), (x0 + 10 * float(run[-1]) + 7, y)])


def test_drawing_with_the_mouse_shows_the_digit(page, server, real_data):
    page.goto(f"{server[0]}/draw")
    x0, y0 = pad_origin(page)
    one = [(x0 + 140 + 0.4 * i, y0 + 50 + 9 * i) for i in range(21)]  # the Farsi 1 is one downward stroke

    digit, cold = timed_answer(page, lambda: stroke(page, one))
    assert digit == "1"
    page.get_by_role("button", name="Clear").click()
    predicted(page).wait_for(state="detached")
    pad_origin(page)
    digit, warm = timed_answer(page, lambda: stroke(page, one))
    assert digit == "1"

    page.get_by_role("button", name="Clear").click()
    predicted(page).wait_for(state="detached")
    width = page.get_by_role("slider", name="Stroke width")
    width.focus()
    while int(width.input_value()) > 12:  # thin ink: about one pixel row per 10 screen pixels
        page.keyboard.press("ArrowLeft")
    script, label = TRACED
    data = np.load(real_data / script / "test.npz")
    trace(page, data["images"][int(np.flatnonzero(data["labels"] == label)[0])])
    predicted(page).wait_for()
    settle(page)
    assert predicted(page).inner_text() == str(label)
    page.wait_for_timeout(500)  # let the plotly charts finish drawing
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "draw.png"))
    (ARTIFACTS / "latency.json").write_text(json.dumps({"first_drawing_s": cold, "later_drawing_s": warm}))
    print(f"drawing-to-result latency: first {cold:.2f} s, later {warm:.2f} s")
    assert warm < MAX_LATENCY_S, f"the answer took {warm:.2f} s after the drawing"


def test_speaking_into_the_microphone_shows_the_digit(page, server):
    page.goto(f"{server[0]}/speak")
    record = page.get_by_role("button", name="Record")
    record.wait_for()
    settle(page)
    record.click()
    page.wait_for_timeout(1500)  # the digit, then silence from the fake microphone's file
    page.locator("[data-testid='stAudioInputActionButton']").click()
    predicted(page).wait_for()
    assert predicted(page).inner_text() == RECORDING[0]
    assert page.locator("audio").count() >= 2, "the voiced segment and the reconstructed speech should play"
