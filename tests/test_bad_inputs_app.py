"""The bad-input matrix through the app's pages (AppTest): what a page shows for an odd canvas or an odd
recording is what `Pipeline.predict` gives for it, the digit or the InputError's own words, and never a
traceback. Also: a damaged checkpoint, and eight sessions at once.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import mvae
from mvae.checkpoint import save_model
from mvae.config import ModelConfig
from mvae.model.model import MVAE
from tests.bad_cases import MP3, dot, encode, inked, png, random_bytes, ring, variants
from tests.helpers import open_page, outcome, real_recording
from webapp import inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the drawing and speaking pages -----------------------------------------------------------------
@pytest.fixture(scope="module")
def app_pipe():
    """The checkpoint the app loads (MVAE_CHECKPOINT, else the shipped one)."""
    return mvae.load()


def assert_clean(at: AppTest) -> None:
    """No traceback, no apology for an unexpected failure and no error box reached the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def messages(at: AppTest) -> list[str]:
    return [m.value for m in (*at.info, *at.warning, *at.error)]


def shown_digit(at: AppTest) -> str | None:
    values = [m.value for m in at.metric if m.label == "Predicted digit"]
    return values[0] if values else None


def assert_page_matches(at: AppTest, expected, or_says: str | None = None) -> None:
    """The page shows what predict gives for the same input: the digit, or the InputError's own words
    (or, where the page knows better, its own message matching `or_says`)."""
    assert_clean(at)
    if isinstance(expected, mvae.InputError):
        said = messages(at)
        assert str(expected) in said or (or_says and any(re.search(or_says, m) for m in said)), said
        assert shown_digit(at) is None
    else:
        assert shown_digit(at) == str(expected.label), messages(at)


def data_url(rgba: np.ndarray) -> dict:
    """What the drawing pad sends: its pixels as a PNG data URL, and the drawn objects."""
    encoded = base64.b64encode(png(rgba)).decode("ascii")
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": f"data:image/png;base64,{encoded}"}}


def as_the_page_decodes_it(rgba: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png(rgba))))


def real_digit(real_data, script="farsi", digit=3) -> np.ndarray:
    data = np.load(real_data / script / "test.npz")
    return data["images"][int(np.flatnonzero(data["labels"] == digit)[0])]


def on_pad(digit28: np.ndarray, size: int = 280, alpha: bool = False) -> np.ndarray:
    big = np.asarray(Image.fromarray(digit28).resize((size * 5 // 7, size * 5 // 7), Image.Resampling.BILINEAR))
    pad = np.zeros((size, size, 4), np.uint8)
    top, left = size // 7, size // 5
    if alpha:
        pad[top:top + big.shape[0], left:left + big.shape[1], 3] = big
    else:
        pad[..., 3] = 255
        pad[top:top + big.shape[0], left:left + big.shape[1], :3] = big[..., None]
    return pad


PAD_CASES = {
    "a real digit": lambda d: on_pad(d),
    "empty pad": lambda d: np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),
    "empty transparent pad": lambda d: np.zeros((280, 280, 4), np.uint8),
    "fully inked pad": lambda d: np.full((280, 280, 4), 255, np.uint8),
    "fully inked transparent pad": lambda d: inked(),
    "inked all but a margin": lambda d: inked(margin=3),
    "single dot": lambda d: dot(),
    "1x1 pad": lambda d: np.full((1, 1, 4), 255, np.uint8),
    "4000x4000 pad": lambda d: on_pad(d, 4000),
    "ink only in alpha": lambda d: on_pad(d, alpha=True),
}


@pytest.fixture(scope="module")
def draw_page():
    return open_page("draw")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(PAD_CASES))
def test_draw_page(draw_page, app_pipe, real_data, case):
    rgba = PAD_CASES[case](real_digit(real_data))
    expected = outcome(app_pipe, {"farsi": as_the_page_decodes_it(rgba)})
    draw_page.session_state["draw-script"] = "farsi"
    draw_page.session_state["draw-0"] = data_url(rgba)
    draw_page.run()
    if rgba.shape[:2] != (inputs.CANVAS_PX, inputs.CANVAS_PX):
        # The pad always sends its own size; any other is a forged message, refused before decoding.
        assert_clean(draw_page)
        assert any("but the pad is 280×280" in m for m in messages(draw_page)), messages(draw_page)
        assert shown_digit(draw_page) is None
        return
    assert_page_matches(draw_page, expected)
    if case in ("a real digit", "ink only in alpha"):
        assert shown_digit(draw_page) == "3"


def recordings_for_pages(real_data) -> dict[str, bytes]:
    wave, rate = real_recording(real_data)
    renamed = {f"{name} renamed .wav": data for name, data in variants(wave, rate).items()
               if name in ("flac", "ogg", "mp3")}
    long = np.zeros(rate * 600, np.float32)
    long[:len(wave)] = wave
    return {
        "a real recording": encode(wave, rate, subtype="PCM_16"),
        **{name: data for name, data in variants(wave, rate).items() if name not in ("flac", "ogg", "mp3")},
        **renamed,
        "silence": encode(np.zeros(2 * rate, np.float32), rate, subtype="PCM_16"),
        "44-byte header-only WAV": encode(np.zeros(0, np.float32), 44100, subtype="PCM_16"),
        "10-minute WAV": encode(long, rate, subtype="PCM_16"),
        "truncated WAV": encode(wave, rate, subtype="PCM_16")[: len(wave)],
        "random bytes": random_bytes(),
        "a PNG renamed .wav": png(ring()),
        "NaN samples": encode(np.where(np.arange(len(wave)) == 100, np.nan, wave).astype(np.float32), rate,
                              subtype="FLOAT"),
    }


SPEECH_CASES = ["a real recording", "192 kHz WAV", "stereo 44.1 kHz WAV", "8-bit WAV", "24-bit WAV", "float32 WAV",
                "clipping", "DC offset", "flac renamed .wav", "ogg renamed .wav",
                *(["mp3 renamed .wav"] if MP3 else []), "silence", "44-byte header-only WAV", "10-minute WAV",
                "truncated WAV", "random bytes", "a PNG renamed .wav", "NaN samples"]


@pytest.fixture(scope="module")
def page_recordings(real_data):
    return recordings_for_pages(real_data)


@pytest.fixture(scope="module")
def speak_pages():
    pages = {}
    for source in inputs.SOURCES:
        at = open_page("speak")
        at.segmented_control(key="speak-source").set_value(source)
        pages[source] = at.run()
    return pages


def give(at: AppTest, source: str, data: bytes) -> None:
    if source == "mic":
        at.audio_input(key="speak-mic").set_value(("recording.wav", data, "audio/wav"))
    elif source == "recorder":
        at.session_state["speak-recorder"] = json.dumps(list(data))  # how the component sends its WAV
    else:
        at.file_uploader(key="speak-upload").set_value(("digit.wav", data, "audio/wav"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", SPEECH_CASES)
def test_speak_page_upload(speak_pages, app_pipe, page_recordings, case):
    data = page_recordings[case]
    assert len(data) < 10 * 2**20, "keep every case under the upload limit; the limit has its own test"
    at = speak_pages["upload"]
    give(at, "upload", data)
    at.run()
    assert_page_matches(at, outcome(app_pipe, {"speech": data}))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("source, case", [
    ("mic", "silence"), ("mic", "a real recording"), ("mic", "random bytes"),
    ("recorder", "44-byte header-only WAV"), ("recorder", "stereo 44.1 kHz WAV"), ("recorder", "clipping"),
])
def test_speak_page_microphone_and_recorder(speak_pages, app_pipe, page_recordings, source, case):
    data = page_recordings[case]
    at = speak_pages[source]
    give(at, source, data)
    at.run()
    # The recorder sends a bare header when its first buffer is silent; the page may explain that itself.
    assert_page_matches(at, outcome(app_pipe, {"speech": data}), or_says="no recording" if len(data) == 44 else None)


# -- the app says so when its checkpoint is damaged ------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["truncated", "flipped byte"])
def test_the_app_says_when_its_checkpoint_is_damaged(tmp_path, monkeypatch, how):
    torch.manual_seed(0)
    file = save_model(tmp_path / "damaged", MVAE(ModelConfig(hidden=16, latent_dim=4)), {})
    data = bytearray(file.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[-9] ^= 0x10
    file.write_bytes(bytes(data))
    monkeypatch.setenv("MVAE_CHECKPOINT", str(tmp_path / "damaged"))
    for page in ("home", "draw", "speak"):
        at = open_page(page)
        assert not at.exception, [e.value for e in at.exception]
        errors = [e.value for e in at.error]
        assert any("could not be loaded" in e and "damaged" in e and str(file) in e for e in errors), errors


# -- eight sessions at once ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eight_sessions_at_once_each_get_their_own_answer(app_pipe, real_data):
    """Four drawing and four speaking sessions run their scripts at the same moment; each must show the
    prediction for its own input, and keep its own latent, bit for bit as a lone call gives it."""
    jobs = []
    for script, digit in (("farsi", 1), ("farsi", 2), ("kannada", 3), ("kannada", 4)):
        rgba = on_pad(real_digit(real_data, script, digit))
        jobs.append(("draw", script, rgba, {script: as_the_page_decodes_it(rgba)}))
    for name in ("5_jackson_0.wav", "6_theo_1.wav", "7_george_2.wav", "8_lucas_3.wav"):
        data = (real_data / "fsdd" / "recordings" / name).read_bytes()
        jobs.append(("speak", name, data, {"speech": data}))
    expected = [app_pipe.predict(inputs) for *_, inputs in jobs]
    assert len({p.latent_mean.tobytes() for p in expected}) == len(jobs), "the inputs must differ to show a leak"

    sessions = []
    for page, what, value, _ in jobs:
        at = open_page(page)
        if page == "draw":
            at.session_state["draw-script"] = what
            at.session_state["draw-0"] = data_url(value)
        else:
            at.audio_input(key="speak-mic").set_value((what, value, "audio/wav"))
        sessions.append(at)

    start = threading.Barrier(len(sessions))
    failures: list[BaseException] = []
    spans: list[tuple[float, float]] = []

    def run(at):
        try:
            start.wait(60)
            began = time.perf_counter()
            at.run()
            spans.append((began, time.perf_counter()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(at,)) for at in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert not failures, failures
    assert max(b for b, _ in spans) < min(e for _, e in spans), "the sessions did not overlap"
    for at, (page, what, *_), pred in zip(sessions, jobs, expected):
        assert ("draw-0" if page == "draw" else "speak-mic") in at.session_state
        assert_clean(at)
        assert shown_digit(at) == str(pred.label), (page, what)
        latest = at.session_state["last_latent"]
        assert np.array_equal(latest["z"], pred.latent_mean), f"{page} {what}: another session's latent"
        assert latest["label"] == pred.label
        assert ("drawing" in latest["source"]) == (page == "draw")
        other = "speak-mic" if page == "draw" else "draw-0"
        assert other not in at.session_state, f"{page} {what} holds another page's widget state"
