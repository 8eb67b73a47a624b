"""The bad-input matrix in a real browser: uploads that Streamlit's own uploader refuses, for their size
or their type, are refused in words and never reach the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.bad_cases import MP3, variants
from tests.helpers import real_recording
from tests.served_app import CHROMIUM, LAUNCH_ARGS, healthy, playwright_session, streamlit_server
from webapp import inputs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


# -- uploads the browser refuses --------------------------------------------------------------------------------
def upload_limit_mb() -> float:
    import tomllib

    return float(tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"])


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    log = tmp_path_factory.mktemp("served") / "server.log"
    with playwright_session() as p, streamlit_server(log) as url:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield url, browser
        browser.close()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.timeout(180)
def test_uploads_over_the_limit_or_of_another_type_are_refused_in_words(served_app, tmp_path, real_data):
    from playwright.sync_api import expect

    url, browser = served_app
    limit = upload_limit_mb()
    wave, rate = real_recording(real_data)
    over = tmp_path / "too-big.wav"
    sf.write(over, np.resize(wave, int((limit + 0.5) * 2**20 / 2)), rate, subtype="PCM_16")
    files = {name: tmp_path / f"digit.{name}" for name in ("flac", "ogg", *(["mp3"] if MP3 else []))}
    for name, path in files.items():
        path.write_bytes(variants(wave, rate)[name])

    page = browser.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{url}/speak")
        page.get_by_text(inputs.SOURCES["upload"], exact=True).click()
        chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
        uploader = page.locator("[data-testid='stFileUploader']")
        chooser.set_input_files(str(over))
        page.get_by_text(f"File must be {limit:.1f}MB or smaller.").wait_for()
        refusals = uploader.get_by_text("files are not allowed")
        for count, path in enumerate(files.values(), start=1):
            chooser.set_input_files(str(path))
            uploader.get_by_text(path.name).wait_for()
            expect(refusals).to_have_count(count)
        # Nothing reached the model: the page still asks for a recording, and shows no traceback.
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stMetric']").count() == 0
        assert healthy(url)
    finally:
        page.close()
