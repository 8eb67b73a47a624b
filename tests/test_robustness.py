"""The stand-ins for real users: drawings on the canvas and recordings through other microphones."""

import numpy as np
import pytest

from mvae.config import AudioConfig
from mvae.evaluation.robustness import CANVAS, DRAWINGS, HEARINGS, Drawing, Hearing, draw, hear
from mvae.signals.audio import AudioFrontEnd
from mvae.signals.images import prepare_digit


def bar_digit() -> np.ndarray:
    """A tall bar with a foot: 20 px high, 8 px wide, like a fitted digit."""
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255
    digit[20:24, 10:18] = 255
    return digit


@pytest.mark.parametrize("name", list(DRAWINGS))
def test_drawings_land_on_the_canvas_at_their_size_and_shape(name):
    style = DRAWINGS[name]
    canvas = draw(bar_digit(), style, np.random.default_rng(0))
    assert canvas.shape == (CANVAS, CANVAS, 4) and not canvas[..., :3].any()
    rows, cols = np.nonzero(canvas[..., 3] > 0)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert abs(height - style.height) <= style.pen + 1
    assert abs(width - round(style.height * 8 / 20 * style.aspect)) <= style.pen + 2
    prepared = prepare_digit(canvas)
    assert prepared.shape == (28, 28) and prepared.max() > 0.9


def test_a_plain_drawing_reads_back_as_the_digit():
    canvas = draw(bar_digit(), Drawing(height=200), np.random.default_rng(1))
    back = prepare_digit(canvas)
    original = prepare_digit(bar_digit())
    assert np.corrcoef(back.ravel(), original.ravel())[0, 1] > 0.95


def test_hearing_changes_rate_channels_level_and_adds_room_noise():
    rate = 8000
    t = np.arange(rate // 2) / rate
    voice = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    front_end = AudioFrontEnd(AudioConfig())
    rng = np.random.default_rng(0)
    wave, out_rate = hear(voice, rate, front_end, HEARINGS["48 kHz stereo"], rng)
    assert out_rate == 48_000 and wave.shape == (len(voice) * 6, 2)
    quiet = Hearing(gain_db=-20.0, padding_s=1.0, snr_db=20.0)
    wave, out_rate = hear(voice, rate, front_end, quiet, rng)
    assert out_rate == rate and len(wave) == len(voice) + 2 * rate
    voice_rms = 0.5 / np.sqrt(2) * 10 ** (-20 / 20)
    noise_rms = np.sqrt(np.mean(wave[: rate - 100] ** 2))
    assert noise_rms == pytest.approx(voice_rms * 10 ** (-20 / 20), rel=0.1)
    lower, _ = hear(voice, rate, front_end, Hearing(semitones=-4.0), rng)
    spectrum = np.abs(np.fft.rfft(lower))
    assert np.fft.rfftfreq(len(lower), 1 / rate)[spectrum.argmax()] == pytest.approx(300 * 2 ** (-4 / 12), rel=0.03)


def test_each_modality_gets_the_stand_ins_of_its_kind_in_the_models_order(monkeypatch):
    from mvae.evaluation import robustness as module
    from mvae.kinds import IMAGES, SPEECH

    calls = []

    def stand_in(how):
        def scores(model, name, data_dir, per_script, rng):
            calls.append((how, name, per_script))
            return {f"{name} {how}": 1.0}
        return scores

    monkeypatch.setitem(module.STAND_INS, IMAGES, stand_in("drawn"))
    monkeypatch.setitem(module.STAND_INS, SPEECH, stand_in("heard"))

    class Model:
        input_names = ("speech", "kannada", "farsi")

    assert list(module.robustness(Model(), "data", per_script=7)) == ["speech heard", "kannada drawn", "farsi drawn"]
    assert calls == [("heard", "speech", 7), ("drawn", "kannada", 7), ("drawn", "farsi", 7)]
    monkeypatch.delitem(module.STAND_INS, SPEECH)  # a kind without stand-ins has none
    assert list(module.robustness(Model(), "data")) == ["kannada drawn", "farsi drawn"]
