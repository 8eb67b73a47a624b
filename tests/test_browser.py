"""The app in a real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

One test draws digits with the mouse, one speaks a real test recording into Chromium's fake microphone.
Each checks the digit the page shows. Others send what a tampered browser could: a drawing far larger
than the pad, a message over the server's size limit, an upload without the XSRF token; and one shows
that uploads still work from inside a cross-site iframe, as on a Hugging Face Space.
Screenshots of failures (and the server's log) go to test-artifacts/.

Every wait is for an event (an element, a text, the script finishing) with a bound that only catches a
page that hangs: a loaded CI machine may take minutes where an idle one takes a second.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.served_app import CHROMIUM, LAUNCH_ARGS, healthy, inflating_png, playwright_session, rss_mb, served_app
from webapp import inputs

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
RECORDING = "5_theo_1.wav"  # a test-split file (index 0-4)
TRACED = ("farsi", 2)  # a real test digit, redrawn stroke by stroke
TIMEOUT_MS = 300_000
CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
MAX_MESSAGE_BYTES = CONFIG["server"]["maxMessageSize"] * 10**6  # Streamlit counts megabytes as 10^6 bytes
# How much a refused drawing may add to the server's peak memory. Decoding the 13000×13000 one would add
# 676 MB for Pillow's image and as much again for the array.
MAX_GROWTH_MB = 150

# Every message the page sends over its websocket, by size, for the tests that measure them.
RECORD_SENT = """
window.__mvaeSent = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.__mvaeSent.push(data.byteLength ?? data.size ?? data.length);
  return send.call(this, data);
};
"""
# A tampered pad: once window.__mvaeForged is set, every PNG the canvas renders is replaced by it.
FORGE_DRAWING = """
const toDataURL = HTMLCanvasElement.prototype.toDataURL;
HTMLCanvasElement.prototype.toDataURL = function (...args) {
  return window.__mvaeForged ?? toDataURL.apply(this, args);
};
"""


@pytest.fixture(scope="module")
def playwright():
    with playwright_session() as p:
        yield p


@pytest.fixture(scope="module")
def server(playwright, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    with served_app(log_path) as served:
        yield served


@pytest.fixture(scope="module")
def fake_mic(real_data, tmp_path_factory) -> Path:
    """The real recording once, then silence: Chromium loops the file, so a take holds one spoken digit.
    The silence is long, so that a stop click that comes late on a busy machine still hears no second digit."""
    wave, rate = sf.read(real_data / "fsdd" / "recordings" / RECORDING, dtype="float32")
    assert np.abs(wave[:80]).max() > 0, "Chromium's fake microphone needs a file that starts with sound"
    path = tmp_path_factory.mktemp("mic") / "digit.wav"
    sf.write(path, np.concatenate([wave, np.zeros(8 * rate, np.float32)]), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(playwright, fake_mic):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                         args=[*LAUNCH_ARGS, *FAKE_MIC_ARGS,
                                               f"--use-file-for-fake-audio-capture={fake_mic}"])
    yield browser
    browser.close()


def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["microphone"])
    context.add_init_script(RECORD_SENT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture
def page(browser, server, request):
    page = new_page(browser)
    failed_before = request.session.testsfailed
    yield page
    # The call phase has been reported by now, so a failure of this test shows in the session's count.
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"{request.node.name}-server.log").write_text(server.log.read_text())
    page.context.close()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


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
    pad.first.wait_for()
    settle(page)
    # Clear remounts the pad under a new key; the old one lingers until the rerun has replaced it.
    expect(pad).to_have_count(1, timeout=TIMEOUT_MS)
    box = pad.bounding_box()
    assert round(box["width"]) == 280 and round(box["height"]) == 280, box
    return box["x"], box["y"]


def largest_sent(page) -> int:
    return max(page.evaluate("window.__mvaeSent"), default=0)


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
    page.goto(f"{server.url}/draw")
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
    # Each stroke's answer arrives in turn; wait for the one after the last stroke, however long it takes.
    expect(predicted(page)).to_have_text(str(label), timeout=TIMEOUT_MS)
    settle(page)
    page.wait_for_timeout(500)  # let the plotly charts finish drawing
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "draw.png"))
    # A traced digit is the most a person sends at once: about 50 strokes, each a path, and the PNG.
    sent = largest_sent(page)
    (ARTIFACTS / "latency.json").write_text(json.dumps({"first_drawing_s": cold, "later_drawing_s": warm,
                                                        "largest_drawing_message_bytes": sent}))
    print(f"drawing-to-result latency: first {cold:.2f} s, later {warm:.2f} s; largest message {sent} bytes")
    assert 0 < sent < inputs.MAX_DRAWING_BYTES < MAX_MESSAGE_BYTES


def test_speaking_into_the_microphone_shows_the_digit(page, server):
    page.goto(f"{server.url}/speak")
    record = page.get_by_role("button", name="Record")
    record.wait_for()
    settle(page)
    record.click()
    page.wait_for_timeout(1500)  # the digit, then silence from the fake microphone's file
    page.locator("[data-testid='stAudioInputActionButton']").click()
    expect(predicted(page)).to_have_text(RECORDING[0], timeout=TIMEOUT_MS)
    assert page.locator("audio").count() >= 2, "the voiced segment and the reconstructed speech should play"


# -- what a tampered browser can send -------------------------------------------------------------------------
def draw_forged(page, url: str, forged: str) -> None:
    """Opens the Draw page with a tampered pad and draws one stroke, which sends `forged` as its PNG."""
    page.context.add_init_script(FORGE_DRAWING)
    page.goto(f"{url}/draw")
    x0, y0 = pad_origin(page)
    page.evaluate("forged => { window.__mvaeForged = forged; }", forged)
    stroke(page, [(x0 + 140, y0 + 50 + 9 * i) for i in range(21)])


def warmed_rss_mb(page, url: str, pid: int) -> float:
    """The server's memory once the Draw page has run (the model loaded, the component registered)."""
    page.goto(f"{url}/draw")
    pad_origin(page)
    return rss_mb(pid)[0]


def test_an_oversized_drawing_is_refused_in_words_before_it_is_decoded(page, server):
    before = warmed_rss_mb(page, server.url, server.pid)
    bomb = "data:image/png;base64," + base64.b64encode(inflating_png(13000, 13000)).decode("ascii")
    assert 800_000 < len(bomb) < MAX_MESSAGE_BYTES  # small enough to arrive: the app itself must refuse it
    draw_forged(page, server.url, bomb)
    expect(page.get_by_text("13000×13000 pixels")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text(inputs.REDRAW)).to_be_visible()
    assert page.locator("[data-testid='stException']").count() == 0
    assert predicted(page).count() == 0
    assert largest_sent(page) > len(bomb), "the forged drawing did not go through the component"
    _, peak = rss_mb(server.pid)
    assert peak - before < MAX_GROWTH_MB, f"the server's peak memory grew from {before:.0f} MB to {peak:.0f} MB"
    assert healthy(server.url)


def test_a_message_over_the_size_limit_is_dropped_and_the_server_carries_on(browser, server):
    """Over server.maxMessageSize the server closes that browser's connection before parsing anything."""
    page = new_page(browser)
    try:
        before = warmed_rss_mb(page, server.url, server.pid)
        over = "data:image/png;base64," + "A" * (MAX_MESSAGE_BYTES + 1000)
        closed = []
        page.on("websocket", lambda ws: ws.on("close", lambda _: closed.append(True)))
        draw_forged(page, server.url, over)
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not closed and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert closed, "the server kept a connection that sent more than maxMessageSize"
        assert healthy(server.url)
        _, peak = rss_mb(server.pid)
        assert peak - before < MAX_GROWTH_MB, f"the server's peak memory grew from {before:.0f} MB to {peak:.0f} MB"
    finally:
        page.context.close()
    # Anyone else, and the same visitor after a reload, is served as before.
    page = new_page(browser)
    try:
        page.goto(f"{server.url}/draw")
        x0, y0 = pad_origin(page)
        stroke(page, [(x0 + 140 + 0.4 * i, y0 + 50 + 9 * i) for i in range(21)])
        expect(predicted(page)).to_have_text("1", timeout=TIMEOUT_MS)
    finally:
        page.context.close()


# -- XSRF and what protects uploads without it -------------------------------------------------------------
UPLOAD_ROUTE = "/_stcore/upload_file"
XSRF_ON = ("--server.enableXsrfProtection", "true", "--server.xsrfCookieSameSite", "none")


def put(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "audio/wav"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_without_xsrf_an_upload_still_needs_a_live_session(server):
    """XSRF is off (see the config); an upload must still name a session that is open at that moment,
    whose id only that visitor's page knows. (The size cap comes after this check;
    test_bad_inputs_browser.py shows it.)"""
    assert CONFIG["server"]["enableXsrfProtection"] is False
    with urllib.request.urlopen(f"{server.url}/_stcore/health") as response:
        assert not [c for c in response.headers.get_all("Set-Cookie") or [] if "xsrf" in c.lower()]
    assert put(f"{server.url}{UPLOAD_ROUTE}/00000000-0000-0000-0000-000000000000/some-file", b"RIFF") == 400


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def upload_in_cross_site_iframe(browser, url: str, wav: Path, folder: Path):
    """As on a Space: the Speak page in an iframe of a page from another site (localhost against 127.0.0.1),
    in a fresh browser context as Playwright makes them. Returns the page, the frame, the other site's
    server and the status the upload got."""
    (folder / "space.html").write_text(f'<!doctype html><title>Space</title><iframe src="{url}/speak?embed=true" '
                                       'width="1300" height="950"></iframe>')
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=host.serve_forever, daemon=True).start()
    page = new_page(browser)
    try:
        page.goto(f"http://localhost:{host.server_address[1]}/space.html")
        frame = page.frame_locator("iframe")
        frame.get_by_text(inputs.SOURCES["upload"], exact=True).click()
        with page.expect_response(lambda r: UPLOAD_ROUTE in r.url and r.request.method == "PUT") as upload:
            frame.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(wav))
        return page, frame, host, upload.value.status
    except BaseException:
        page.context.close()
        host.shutdown()
        raise


@pytest.fixture
def spoken_wav(real_data, tmp_path) -> Path:
    path = tmp_path / RECORDING
    path.write_bytes((real_data / "fsdd" / "recordings" / RECORDING).read_bytes())
    return path


def test_uploads_work_inside_a_cross_site_iframe(browser, server, spoken_wav, tmp_path):
    page, frame, host, status = upload_in_cross_site_iframe(browser, server.url, spoken_wav, tmp_path)
    try:
        assert status == 204
        expect(frame.locator("[data-testid='stMetric']").filter(has_text="Predicted digit")
               .locator("[data-testid='stMetricValue']")).to_have_text(RECORDING[0], timeout=TIMEOUT_MS)
    finally:
        page.context.close()
        host.shutdown()


def test_with_xsrf_on_uploads_inside_a_cross_site_iframe_are_refused(browser, spoken_wav, tmp_path):
    """Why the config leaves XSRF off: with it on, even with the cookie SameSite=None; Secure, the browser
    drops the cookie in the iframe and Streamlit refuses the upload. If this starts to fail, turn XSRF on."""
    with served_app(tmp_path / "server.log", *XSRF_ON) as xsrf_server:
        with urllib.request.urlopen(f"{xsrf_server.url}/_stcore/health") as response:
            cookie = " ".join(response.headers.get_all("Set-Cookie") or [])
        assert "_streamlit_xsrf=" in cookie and "SameSite=None" in cookie and "Secure" in cookie
        page, frame, host, status = upload_in_cross_site_iframe(browser, xsrf_server.url, spoken_wav, tmp_path)
        try:
            assert status == 403
            assert not [c for c in page.context.cookies() if c["name"] == "_streamlit_xsrf"]
        finally:
            page.context.close()
            host.shutdown()


# Every page's path, the home page first; a visit to each must fetch nothing from anywhere but this server.
PAGE_PATHS = ["", "draw", "speak", "combine", "generate", "latent", "report"]
LOCAL_SCHEMES = ("data:", "blob:")


def test_no_request_leaves_the_machine_while_the_pages_load(page, server):
    """An offline Space logged a failed request on every page: its favicon came from Google's font CDN."""
    local = urllib.parse.urlsplit(server.url).netloc
    outside = []
    page.on("request", lambda r: None if r.url.startswith(LOCAL_SCHEMES) or urllib.parse.urlsplit(r.url).netloc
            == local else outside.append(r.url))
    for path in PAGE_PATHS:
        page.goto(f"{server.url}/{path}")
        settle(page)
        page.wait_for_timeout(1000)  # the favicon follows the page's config message; give it time to be asked for
        icon = page.evaluate("document.querySelector(\"link[rel='shortcut icon']\")?.href ?? ''")
        assert urllib.parse.urlsplit(icon).netloc == local, f"/{path}: the favicon is {icon!r}"
    assert not outside, f"requests that left {local}: {sorted(set(outside))}"
