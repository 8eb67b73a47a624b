"""A small log-mel spectrogram beside every audio player of the app, and the report's spectrograms of every digit.

Each page runs headless with AppTest. Two things are checked on every page that plays a sound:
- in the page's layout, each player is followed at once by a spectrogram in the same container;
- each spectrogram is the log-mel of the sound its player plays: its colours are read back to levels and
  compared with the log-mel that the model's own front end makes of the played WAV. It must match that sound
  closely, and better than any other sound on the page or that sound turned backwards or upside down, so a
  placeholder, a neighbour's picture or one drawn the wrong way round fails.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402

from tests.helpers import open_page  # noqa: E402
from tests.test_app import REAL_RECORDINGS, assert_clean, canvas_value, first_of_class, recording, rerun  # noqa: E402
from webapp import figures, names, show, state  # noqa: E402

# A spectrogram drawn from the mel a sound was made from, against the log-mel of that sound after Griffin-Lim,
# correlates at 0.97 or more (sharper speech loses more in the round trip); two generated samples of one digit
# correlate nearly as well (the quiet floor they share), so the bar also requires that, over the voiced bins, no
# other sound on the page matches better.
MIN_CORRELATION = 0.95


@pytest.fixture(scope="module")
def pipe(shipped_pipeline):
    return shipped_pipeline


class Shown:
    """Every sound and picture the pages hand to Streamlit, in order: ("audio", wav bytes) and
    ("image", pixels, caption)."""

    def __init__(self):
        self.calls, self.start = [], 0

    def run(self, at):
        """Runs the page again, keeping only what this run shows in `last_run`."""
        self.start = len(self.calls)
        return rerun(at)

    @property
    def last_run(self):
        return self.calls[self.start:]


@pytest.fixture
def shown(monkeypatch):
    record = Shown()
    audio, image = st.audio, st.image

    def record_audio(data, *args, **kwargs):
        record.calls.append(("audio", data))
        return audio(data, *args, **kwargs)

    def record_image(data, *args, caption=None, **kwargs):
        record.calls.append(("image", data, caption))
        return image(data, *args, caption=caption, **kwargs)

    monkeypatch.setattr(st, "audio", record_audio)
    monkeypatch.setattr(st, "image", record_image)
    return record


# -- reading the page ----------------------------------------------------------------------------------------
def blocks(node):
    yield node
    for child in getattr(node, "children", {}).values():
        if hasattr(child, "children"):
            yield from blocks(child)


def is_spectrogram(node) -> bool:
    return getattr(node, "type", None) == "image" and list(node.captions) == [show.SPECTROGRAM_CAPTION]


def assert_a_spectrogram_follows_every_player(at) -> int:
    """Each audio element's next sibling is a spectrogram, and there are as many of each; returns the count."""
    players = spectrograms = 0
    for block in blocks(at.main):
        children = [block.children[i] for i in sorted(block.children)]
        for i, child in enumerate(children):
            spectrograms += is_spectrogram(child)
            if getattr(child, "type", None) == "audio":
                players += 1
                assert i + 1 < len(children) and is_spectrogram(children[i + 1]), \
                    "an audio player without a spectrogram right after it"
    assert players == spectrograms == len(at.get("audio")), (players, spectrograms)
    return players


def levels(image: np.ndarray) -> np.ndarray:
    """The (n_mels, n_frames) levels a spectrogram picture shows, read back from its colours."""
    colours = {tuple(int(v) for v in c): i for i, c in enumerate(figures.spectrogram_colours())}
    high_px, wide_px = figures.SPECTROGRAM_SCALE
    small = np.asarray(image)[::high_px, ::wide_px]
    return np.array([[colours[tuple(int(v) for v in px)] for px in row] for row in small], np.float64)[::-1]


def heard(pipe, wav: bytes) -> np.ndarray:
    """The log-mel the model's front end makes of a played WAV, without the silence a player pads it with."""
    wave, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == pipe.config.audio.sample_rate
    front = pipe.front_end
    return front.log_mel(front.fix_length(np.trim_zeros(wave, "b")))


def played_pairs(calls) -> list[tuple[bytes, np.ndarray]]:
    """(the sound, the spectrogram shown with it) for every player, in the order they were drawn."""
    shown = [c for c in calls if c[0] == "audio" or c[2] == show.SPECTROGRAM_CAPTION]
    pairs = list(zip(shown[::2], shown[1::2]))
    assert all(a[0] == "audio" and s[0] == "image" for a, s in pairs) and len(shown) % 2 == 0, \
        "players and spectrograms do not alternate"
    return [(a[1], s[1]) for a, s in pairs]


def assert_each_spectrogram_is_its_sound(pipe, calls, expected: int) -> list[tuple[bytes, np.ndarray]]:
    pairs = played_pairs(calls)
    assert len(pairs) == expected, f"{len(pairs)} players drawn, {expected} on the page"
    sounds = [heard(pipe, wav) for wav, _ in pairs]
    # Decoys: each sound backwards and upside down. A page with one player has no neighbour to confuse, and a
    # spectrogram drawn the wrong way round still correlates well with a centred blob of sound.
    decoys = [m[:, ::-1] for m in sounds] + [m[::-1] for m in sounds]
    for i, (_, picture) in enumerate(pairs):
        shown = levels(picture).ravel()
        assert np.ptp(shown) > 0, "a blank picture"
        whole = np.corrcoef(shown, sounds[i].ravel())[0, 1]
        assert whole >= MIN_CORRELATION, f"spectrogram {i} is not the log-mel of its sound: r = {whole:.3f}"
        # Which sound it is, over the bins the picture shows louder than its quietest: the silence every clip
        # shares (as deep as the front end's floor once the log-mel contrast sharpens it) makes two voices of one
        # digit correlate at 0.98 over the whole picture.
        voiced = shown > shown.min()
        match = [np.corrcoef(shown[voiced], sound.ravel()[voiced])[0, 1] for sound in sounds + decoys]
        assert int(np.argmax(match)) == i, f"spectrogram {i} matches another sound (or a decoy) better: {match}"
    return pairs


def check_page(pipe, at, shown, least: int) -> None:
    """The page's players each have their own sound's spectrogram right after them."""
    assert_clean(at)
    count = assert_a_spectrogram_follows_every_player(at)
    assert count >= least, f"{count} players, expected at least {least}"
    assert_each_spectrogram_is_its_sound(pipe, shown.last_run, count)


# -- the picture itself ----------------------------------------------------------------------------------------
def test_the_picture_is_the_log_mel_with_low_pitch_at_the_bottom():
    mel = np.zeros((64, 64), np.float32)
    mel[2, 10:20] = 5.0  # a loud low band early on
    picture = figures.spectrogram_image(mel)
    high_px, wide_px = figures.SPECTROGRAM_SCALE
    assert picture.shape == (64 * high_px, 64 * wide_px, 3) and picture.dtype == np.uint8
    back = levels(picture)
    assert back[2, 10] == figures.SPECTROGRAM_LEVELS - 1 and back[2, 30] == 0 and back[60, 10] == 0
    bottom = picture[-1 - 2 * high_px, 10 * wide_px]
    assert tuple(bottom) == tuple(figures.spectrogram_colours()[-1]), "mel bin 0 is drawn at the bottom"
    with pytest.raises(ValueError):
        figures.spectrogram_image(np.full((64, 64), np.nan, np.float32))


# -- every page with a player ----------------------------------------------------------------------------------
def test_draw_shows_a_spectrogram_with_the_reconstruction_and_each_voice(pipe, real_data, shown):
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(first_of_class(real_data, "farsi", 2))
    shown.run(at)
    check_page(pipe, at, shown, 1 + names.STYLE_VOICES)


def test_speak_shows_a_spectrogram_with_the_voiced_segment_and_the_reconstruction(pipe, real_data, shown):
    at = open_page("speak")
    at.audio_input(key="speak-mic").set_value((REAL_RECORDINGS[0], recording(real_data, REAL_RECORDINGS[0]),
                                               "audio/wav"))
    shown.run(at)
    check_page(pipe, at, shown, 2)


def test_combine_shows_a_spectrogram_with_every_player(pipe, real_data, shown):
    at = open_page("combine")
    at.session_state["combine-farsi-0"] = canvas_value(first_of_class(real_data, "farsi", 9))
    at.audio_input(key="combine-speech-mic").set_value(("9.wav", recording(real_data, "9_jackson_0.wav"), "audio/wav"))
    shown.run(at)
    check_page(pipe, at, shown, 1)


def test_generate_shows_each_samples_own_spectrogram(pipe, shown):
    at = open_page("generate")
    at.slider(key="gen-n").set_value(5)
    at.selectbox(key="gen-digit").set_value(4)
    shown.run(at)
    check_page(pipe, at, shown, 5)
    samples = pipe.generate(4, n=5, temperature=1.0, seed=0)
    pairs = played_pairs(shown.last_run)
    for (wav, picture), speech in zip(pairs, samples.speech):
        assert np.array_equal(picture, figures.spectrogram_image(speech.mel)), "not the mel this sample was made from"
        assert wav == speech.wav_bytes


def test_latent_explorer_shows_a_spectrogram_with_every_player(pipe, shown):
    at = open_page("latent")
    assert pipe.latent_map is not None, "the shipped checkpoint carries its test-set map"
    point = {"curve_number": 3, "point_index": 0, "customdata": 0}
    at.session_state["latent-map"] = {"selection": {"points": [point], "point_indices": [0], "box": [], "lasso": []}}
    shown.run(at)
    assert "Test example of digit" in " ".join(m.value for m in at.markdown)
    check_page(pipe, at, shown, 3)  # a traversal point, an interpolation step and the clicked point


# -- the report ----------------------------------------------------------------------------------------------
def report_pictures(calls) -> dict[str, np.ndarray]:
    """The report's spectrograms by caption ("3, at the means")."""
    pictures = {}
    for call in calls:
        if call[0] == "image" and isinstance(call[2], list):
            pictures.update({c: p for c, p in zip(call[2], call[1]) if c[:1].isdigit() and ", " in c})
    return pictures


def test_report_shows_real_and_generated_spectrograms_of_every_digit(pipe, real_data, shown, monkeypatch):
    monkeypatch.setenv(state.DATA_ENV, str(real_data))
    at = open_page("report")
    assert_clean(at)
    pictures = report_pictures(shown.calls)
    kinds = names.DIGIT_SPECTROGRAMS.values()
    assert set(pictures) == {f"{d}, {k}" for d in range(10) for k in kinds}
    means = pipe.decode(np.stack([pipe.label_posterior(d)[0] for d in range(10)])).mels
    for d in range(10):
        assert np.array_equal(pictures[f"{d}, at the means"], figures.spectrogram_image(means[d]))
        sample = pipe.generate(d, n=1, temperature=1.0, seed=state.SPECTROGRAM_SEED).mels[0]
        assert np.array_equal(pictures[f"{d}, T = 1"], figures.spectrogram_image(sample))
        name = sorted((real_data / "fsdd" / "recordings").glob(f"{d}_*_[0-4].wav"))[0]
        real = pipe.prepare({"speech": name.read_bytes()})[1].log_mel
        assert np.array_equal(pictures[f"{d}, real"], figures.spectrogram_image(real)), f"digit {d}'s real recording"
    assert not [i for i in at.info if state.DATA_ENV in i.value]


def test_report_says_why_real_spectrograms_are_missing_without_data(shown, monkeypatch):
    monkeypatch.delenv(state.DATA_ENV, raising=False)
    at = open_page("report")
    assert_clean(at)
    pictures = report_pictures(shown.calls)
    assert len(pictures) == 20 and not [c for c in pictures if c.endswith(", real")]
    assert state.NO_REAL_DATA in [i.value for i in at.info]


def test_the_sweep_says_how_its_models_differ_from_the_shipped_one(pipe):
    cfg = pipe.config
    sweep = {"best_trials": [{"number": 1, "value": 0.9, "params": {"latent_dim": 96, "hidden": 384}},
                             {"number": 2, "value": 0.8, "params": {"latent_dim": 32, "hidden": 384}}],
             "model_config": {"architecture": "a-different-one"}}
    note = names.sweep_note(sweep, cfg)
    assert f"latent size 32 or 96 (shipped: {cfg.latent_dim} shared + {cfg.style_dim} style per input)" in note
    assert f"width 384 (shipped: {cfg.hidden})" in note
    assert f"architecture a-different-one (shipped: {cfg.architecture})" in note
    shape = {"latent_dim": cfg.latent_dim, "hidden": cfg.hidden}
    same = {"best_trials": [{"number": 1, "value": 0.9, "params": shape}]}
    assert names.sweep_differences(same, cfg) == []
    assert "not models like the shipped one" not in names.sweep_note(same, cfg)
