"""Every page of the Streamlit app, run headless with AppTest.

Drawings and recordings are injected through the widgets' session-state keys (the canvas and the recorder
are custom components that AppTest cannot click). Real test digits and real test recordings must come out
as the right digit on the page.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import mvae  # noqa: E402
from mvae.evaluation.analysis import latent_map  # noqa: E402
from tests.helpers import open_page  # noqa: E402
from tests.served_app import inflating_png  # noqa: E402
from webapp import figures, inputs, names, show, state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "draw", "speak", "combine", "generate", "latent", "report"]
# First test example of each class, chosen among the ones a model should find unambiguous.
REAL_DIGITS = {"farsi": (2, 9), "kannada": (3, 6)}
REAL_RECORDINGS = ("7_jackson_0.wav", "5_theo_1.wav")


# -- helpers -------------------------------------------------------------------------------------------------
def rerun(at: AppTest) -> AppTest:
    at.run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    """No traceback and no apology reached the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert state.APOLOGY not in [e.value for e in at.error]


def shown_digit(at: AppTest, label: str = "Predicted digit") -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, (f"no '{label}' on the page; info: {[i.value for i in at.info]}, "
                    f"errors: {[e.value for e in at.error]}")
    return values[0]


def messages(at: AppTest) -> str:
    return " ".join(m.value for m in (*at.info, *at.warning, *at.error))


def canvas_value(image: np.ndarray) -> dict:
    """What the drawing pad sends: its 280×280 PNG (white ink on black) and the drawn objects."""
    big = np.kron(np.asarray(image, np.uint8), np.ones((10, 10), np.uint8))
    rgba = np.dstack([big, big, big, np.full_like(big, 255)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}}


def browser_recording(wav: bytes) -> bytes:
    """The same speech as audio-recorder-streamlit delivers it from Chromium: 44.1 kHz, 16-bit stereo."""
    wave, rate = sf.read(io.BytesIO(wav), dtype="float32")
    t = np.arange(int(len(wave) * 44100 / rate)) * rate / 44100
    up = np.interp(t, np.arange(len(wave)), wave).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([up, up], 1), 44100, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def first_of_class(real_data: Path, script: str, digit: int) -> np.ndarray:
    data = np.load(real_data / script / "test.npz")
    return data["images"][int(np.flatnonzero(data["labels"] == digit)[0])]


def recording(real_data: Path, name: str) -> bytes:
    return (real_data / "fsdd" / "recordings" / name).read_bytes()


@pytest.fixture(scope="module")
def pipe(shipped_pipeline):
    return shipped_pipeline


@pytest.fixture
def evaluated(tmp_path, monkeypatch, pipe):
    """A copy of the checkpoint with the evaluator's and the sweep's files beside it."""
    folder = tmp_path / "checkpoints" / "default"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "model.json"):
        shutil.copy(pipe.folder / name, folder / name)
    subsets = ["farsi", "kannada", "speech", "farsi+kannada", "farsi+speech", "kannada+speech", "farsi+kannada+speech"]
    names = ["farsi", "kannada", "speech"]
    coherence = {f"{a}->{b}": 0.8 for a in names for b in names if a != b}
    coherence.update({f"{a}+{b}->{c}": 0.9 for a, b, c in (("farsi", "kannada", "speech"),
                                                             ("farsi", "speech", "kannada"),
                                                             ("kannada", "speech", "farsi"))})
    report = {"accuracy": {s: 0.95 for s in subsets}, "unimodal_accuracy": {n: 0.97 for n in names},
              "extra_accuracy": {"kannada/dig": 0.7, "farsi/remaining": 0.96}, "coherence": coherence,
              "recon": {n: {"given": 100.0, "missing": 150.0} for n in names}, "elbo": -1234.5,
              "active_units": 17, "kl_per_dim": list(np.linspace(0, 2, pipe.latent_dim)),
              "meets_bar": {"coherence": True, "multimodal_accuracy": False},
              "label_coherence": {n: 0.9 for n in names}, "diversity": {"farsi": 0.42, "kannada": 0.5},
              "reconstruction_coherence": {"farsi": 0.97, "kannada": 0.93, "speech": 0.85},
              "halftone": {s: {"generated": 0.3, "real": 0.2, "ratio": 1.5} for s in ("farsi", "kannada")},
              "frechet": {"farsi": 3.25, "kannada": 4.0}, "frechet_real_floor": {"farsi": 0.1, "kannada": 0.1},
              "live_dimensions": {"farsi": 9, "kannada": 3},
              "dimension_effects": {n: list(np.linspace(0, 0.05, pipe.latent_dim)) for n in names},
              "generation": {"temperature": 1.0, "per_class": 200}}
    (folder / "eval.json").write_text(json.dumps(report))
    # Marks as the evaluator wrote them before it wrote words: the page must not show the emoji.
    (folder / "eval.md").write_text("| subset | accuracy |\n|---|---|\n| farsi | 95.00 % ✅ (bar ≥ 90.00 %) |\n"
                                    "| speech | 50.00 % ❌ (bar ≥ 90.00 %) |\n")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    means = np.stack([pipe.label_posterior(d)[0] for d in range(10)])
    latent_map(means[labels] + 0.1 * rng.standard_normal((200, pipe.latent_dim)), labels).save(folder)
    sweep = tmp_path / "checkpoints" / "sweep"
    sweep.mkdir()
    trials = [{"number": i, "value": 0.9 + 0.01 * i, "params": {"lr": 10.0 ** -i, "beta": 1.0}, "state": "COMPLETE"}
              for i in range(3)]
    (sweep / "results.json").write_text(json.dumps({"best_trials": trials[-1:], "importance": {"lr": 0.8, "beta": 0.2},
                                                    "trials": trials}))
    monkeypatch.setenv("MVAE_CHECKPOINT", str(folder))
    return folder


# -- every page ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_an_untouched_app(page):
    at = open_page(page)
    assert_clean(at)
    assert at.title, f"the {page} page has no title"


def test_home_has_the_three_steps_and_the_model_card():
    at = open_page("home")
    text = " ".join(m.value for m in at.markdown)
    for step in ("1. Give a digit", "2. Read the answer", "3. Explore"):
        assert step in text
    for licence in ("non-commercial", "arXiv:1908.01242", "Prabhu", "CC BY-SA 4.0", "no licence stated"):
        assert licence in text
    assert "not been evaluated" in messages(at) or at.metric


def test_home_and_report_show_the_evaluation_when_present(evaluated):
    home = open_page("home")
    assert_clean(home)
    labels = [m.label for m in home.metric]
    assert labels == ["Farsi alone", "Kannada alone", "Speech alone", "All three"], labels
    assert "95.0%" in [m.value for m in home.metric]
    # A quarter of the page holds about 24 characters of a metric's label before the browser cuts it.
    assert max(map(len, labels)) <= 16, labels
    report = open_page("report")
    assert_clean(report)
    assert "not been evaluated" not in messages(report)
    assert {m.label for m in report.metric} >= {"ELBO (all inputs)", "Active latent units", "Accuracy on Dig-MNIST"}
    assert "17 / " in [m.value for m in report.metric if m.label == "Active latent units"][0]
    assert len(report.get("plotly_chart")) >= 7  # curves, accuracies, coherence, pairs, recon, KL, sweep
    assert report.dataframe, "the sweep's best trials are missing"
    generation = {m.label: m.value for m in report.metric}
    assert generation["Diversity, Farsi"] == "0.42" and generation["Fréchet distance, Farsi"] == "3.25"
    assert generation["Half-tone share, Kannada"] == "1.50× real" and generation["Live dimensions, Kannada"] == "3"


def test_report_names_the_quality_bars_in_words_without_emoji(evaluated):
    report = open_page("report")
    assert_clean(report)
    text = [m.value for m in report.markdown]
    assert any("Quality bars met:** coherence from one modality to another." in t for t in text), text
    assert any("Quality bars missed:** accuracy from two or three inputs." in t for t in text), text
    assert "| 95.00 %, met (bar ≥ 90.00 %) |" in " ".join(text) and "50.00 %, **missed**" in " ".join(text)
    shown = " ".join([*text, *(m.label for m in report.metric), *(c.value for c in report.caption)])
    assert not re.search(r"[\u2705\u274C\U0001F300-\U0001FAFF]", shown), \
        "an emoji is an empty box without an emoji font"
    assert not re.search(r"\w_\w|\w/\w", re.sub(r"`[^`]*`|:material/\w+:", "", shown)), \
        "an internal key (unimodal_accuracy/farsi) reached the page"
    charts = [json.loads(c.proto.spec) for c in report.get("plotly_chart")]
    keys = {str(k) for c in charts for trace in c["data"] for k in (trace.get("y") or []) if isinstance(k, str)}
    assert {"Farsi + Kannada", "Farsi + Kannada + speech", "Farsi + speech → Kannada", "the label → speech"} <= keys
    (heat,) = [trace for c in charts for trace in c["data"] if trace["type"] == "heatmap"]
    z = heat["z"]
    if isinstance(z, dict):  # plotly sends numpy arrays as typed base64 buffers
        z = np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape([int(n) for n in z["shape"].split(",")])
    assert [z[i][i] for i in range(3)] == [0.97, 0.93, 0.85]  # each modality's own reconstruction
    assert z[0][1] == 0.8


def test_report_sweep_table_fits_the_page_with_readable_numbers(evaluated):
    report = open_page("report")
    assert_clean(report)
    assert not report.table, "st.table is cut at the page's edge when its columns do not fit"
    (table,) = report.dataframe
    shown = table.value
    assert list(shown.columns) == ["", "trial 2"], "one column per best trial, one row per parameter"
    assert dict(zip(shown[""], shown["trial 2"])) == {"objective": "92.00%", "learning rate": "0.01", "β": "1"}


def test_report_says_when_not_evaluated_yet(pipe, tmp_path, monkeypatch):
    folder = tmp_path / "unevaluated"
    folder.mkdir()
    for name in ("model.safetensors", "model.json"):  # the weights without the evaluator's files
        shutil.copy(pipe.folder / name, folder / name)
    monkeypatch.setenv("MVAE_CHECKPOINT", str(folder))
    at = open_page("report")
    assert "not been evaluated yet" in messages(at)
    assert at.get("plotly_chart"), "the training curves come from the checkpoint itself"


# -- Draw ----------------------------------------------------------------------------------------------------
def test_draw_gives_a_friendly_hint_for_an_empty_canvas():
    at = open_page("draw")
    assert "Draw a Farsi digit" in messages(at)
    assert not at.error and not [m for m in at.metric if m.label == "Predicted digit"]


@pytest.mark.parametrize("script", ["farsi", "kannada"])
def test_draw_real_test_digits_give_the_right_digit(real_data, script):
    at = open_page("draw")
    at.session_state["draw-script"] = script
    for digit in REAL_DIGITS[script]:
        at.session_state["draw-0"] = canvas_value(first_of_class(real_data, script, digit))
        rerun(at)
        assert shown_digit(at) == str(digit), f"{script} {digit}"
        assert at.get("plotly_chart"), "the probability bar and the mel image are missing"
        assert len(at.image) >= 4, "reference glyphs, the model's input and two reconstructions"
        assert at.get("audio"), "no player for the generated speech"


def test_draw_clear_button_empties_the_pad(real_data):
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(first_of_class(real_data, "farsi", 2))
    rerun(at)
    shown_digit(at)
    at.button(key="draw-clear").click()
    rerun(at)
    assert "Draw a Farsi digit" in messages(at)
    assert not [m for m in at.metric if m.label == "Predicted digit"]


def test_draw_a_blank_drawing_is_a_message_not_an_error():
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(np.zeros((28, 28), np.uint8))
    rerun(at)
    assert at.info and not at.error
    assert not [m for m in at.metric if m.label == "Predicted digit"]


def forged_canvas(url: str) -> dict:
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}}


def png_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# What a tampered browser can send in place of the pad's 280×280 PNG, and the words each one must get.
FORGED_DRAWINGS = {
    "13000x13000 (676 MB decoded)": (lambda: png_url(inflating_png(13000, 13000)), "13000×13000 pixels"),
    "one pixel": (lambda: png_url(inflating_png(1, 1)), "1×1 pixels"),
    "over the byte cap": (lambda: png_url(inflating_png(280, 280, extra=bytes(inputs.MAX_DRAWING_BYTES))), "MB"),
    "not a PNG": (lambda: "data:image/png;base64," + base64.b64encode(b"GIF89a" + bytes(64)).decode(), "PNG"),
    "not base64": (lambda: "data:image/png;base64,@@@", "PNG"),
    "no data URL": (lambda: "hello", "PNG"),
    "a number": (lambda: 12345, "PNG"),
}


@pytest.mark.parametrize("case", FORGED_DRAWINGS)
def test_draw_a_forged_drawing_is_refused_in_words(case):
    make, expected = FORGED_DRAWINGS[case]
    at = open_page("draw")
    at.session_state["draw-0"] = forged_canvas(make())
    rerun(at)
    refusal = [w.value for w in at.warning]
    assert refusal and expected in refusal[0] and inputs.REDRAW in refusal[0], messages(at)
    assert not [m for m in at.metric if m.label == "Predicted digit"]


@pytest.mark.slow
def test_canvas_pixels_reads_a_real_pad_png_and_never_decodes_a_bomb():
    """In a fresh process, so that its peak resident memory says what the checks let through."""
    script = (
        "import resource\n"
        "import mvae\n"
        "from webapp import inputs\n"
        "from tests.served_app import inflating_png\n"
        "assert inputs.canvas_pixels(inflating_png(280, 280)).shape == (280, 280, 4)\n"
        "bomb = inflating_png(13000, 13000)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    inputs.canvas_pixels(bomb)\n"
        "except mvae.InputError as exc:\n"
        "    print(exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    import subprocess
    import sys

    # From the repository's root, so that `tests` imports as a package.
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    refusal, grown_mb = done.stdout.splitlines()
    assert "13000×13000" in refusal
    assert int(grown_mb) < 50, f"checking the bomb took {grown_mb} MB more at its peak"


# -- Speak ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REAL_RECORDINGS)
def test_speak_microphone_real_recordings(real_data, name):
    at = open_page("speak")
    at.audio_input(key="speak-mic").set_value((name, recording(real_data, name), "audio/wav"))
    rerun(at)
    assert shown_digit(at) == name[0]
    assert len(at.get("audio")) >= 2, "the voiced segment and the reconstructed speech should both play"
    assert len(at.get("plotly_chart")) >= 2, "waveform and probabilities"
    captions = [c for image in at.image for c in image.captions]
    assert sum(c.startswith("Generated: ") for c in captions) == 2, "the generated Farsi and Kannada digits"
    assert captions.count(show.SPECTROGRAM_CAPTION) == 2, "what the model hears, and what it says back"


def test_the_players_wav_of_a_short_clip_lasts_a_second_and_starts_with_the_clip():
    rate = 8000
    clip = (0.5 * np.sin(np.arange(int(0.3 * rate)) / 5)).astype(np.float32)
    wave, got_rate = sf.read(io.BytesIO(figures.player_wav(clip, rate)), dtype="float32")
    assert got_rate == rate and len(wave) == rate, "a player shows 0:00 / 0:00 for a clip under a second"
    assert np.allclose(wave[:len(clip)], clip, atol=1e-4) and not wave[len(clip):].any()
    long = np.ones(int(1.5 * rate), np.float32) * 0.25
    assert len(sf.read(io.BytesIO(figures.player_wav(long, rate)))[0]) == len(long), "a longer clip is left as it is"


def test_speak_plays_a_short_voiced_segment_as_a_second_and_says_its_length(real_data, pipe, monkeypatch):
    import streamlit as st

    played, audio = [], st.audio
    monkeypatch.setattr(st, "audio",
                        lambda data, *args, **kwargs: (played.append(data), audio(data, *args, **kwargs))[1])
    name = REAL_RECORDINGS[0]
    heard = pipe.predict({"speech": recording(real_data, name)}).prepared_speech
    seconds = len(heard.voiced) / heard.sample_rate
    assert seconds < 1, "the case needs a voiced segment under a second"
    at = open_page("speak")
    at.audio_input(key="speak-mic").set_value((name, recording(real_data, name), "audio/wav"))
    rerun(at)
    info = sf.info(io.BytesIO(played[0]))  # the voiced segment's player comes first
    assert info.samplerate == heard.sample_rate and info.duration >= 1.0
    assert any(c.value.startswith(f"The voiced segment it used ({seconds:.2f} s)") for c in at.caption)


def test_speak_recorder_and_upload_real_recordings(real_data):
    at = open_page("speak")
    at.segmented_control(key="speak-source").set_value("recorder")
    rerun(at)
    wav = browser_recording(recording(real_data, REAL_RECORDINGS[1]))
    at.session_state["speak-recorder"] = json.dumps(list(wav))
    rerun(at)
    assert shown_digit(at) == REAL_RECORDINGS[1][0]
    at.segmented_control(key="speak-source").set_value("upload")
    rerun(at)
    at.file_uploader(key="speak-upload").set_value((REAL_RECORDINGS[0], recording(real_data, REAL_RECORDINGS[0]),
                                                    "audio/wav"))
    rerun(at)
    assert shown_digit(at) == REAL_RECORDINGS[0][0]


def _silence() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 8000, subtype="PCM_16", format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("source, payload, expected", [
    ("mic", _silence(), "silent"),
    ("recorder", _silence()[:44], "no recording"),
    ("upload", b"RIFF\x00\x00\x00\x00WAVEnot really a wav file", "not readable"),
])
def test_speak_bad_recordings_get_a_clear_message(source, payload, expected):
    at = open_page("speak")
    at.segmented_control(key="speak-source").set_value(source)
    rerun(at)
    if source == "mic":
        at.audio_input(key="speak-mic").set_value(("clip.wav", payload, "audio/wav"))
    elif source == "recorder":
        assert len(payload) == 44
        at.session_state["speak-recorder"] = json.dumps(list(payload))
    else:
        at.file_uploader(key="speak-upload").set_value(("clip.wav", payload, "audio/wav"))
    rerun(at)
    assert expected in messages(at).lower()
    assert not [m for m in at.metric if m.label == "Predicted digit"]


# -- Combine -------------------------------------------------------------------------------------------------
def test_combine_any_subset_of_inputs(real_data):
    at = open_page("combine")
    assert "at least one input" in messages(at)
    at.session_state["combine-farsi-0"] = canvas_value(first_of_class(real_data, "farsi", 9))
    at.session_state["combine-kannada-0"] = canvas_value(first_of_class(real_data, "kannada", 9))
    rerun(at)
    at.audio_input(key="combine-speech-mic").set_value(("9.wav", recording(real_data, "9_jackson_0.wav"), "audio/wav"))
    rerun(at)
    assert shown_digit(at, "All together") == "9"
    posterior = at.get("plotly_chart")[0].proto.spec
    for name in ("Farsi drawing", "Kannada drawing", "Speech", "Fused (product)", "Prior N(0, I)"):
        assert name in posterior, f"{name} is missing from the posterior chart"
    assert {m.label for m in at.metric} >= {"Farsi drawing alone", "Kannada drawing alone", "Speech alone"}

    at.toggle(key="combine-use-speech").set_value(False)
    at.toggle(key="combine-use-farsi").set_value(False)
    rerun(at)
    assert shown_digit(at, "All together") == "9"
    labels = {m.label for m in at.metric}
    assert "Kannada drawing alone" in labels and "Speech alone" not in labels and "Farsi drawing alone" not in labels
    traces = {t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert "Kannada drawing" in traces and "Speech" not in traces and "Farsi drawing" not in traces

    at.toggle(key="combine-use-kannada").set_value(False)
    rerun(at)
    assert "at least one input" in messages(at)


# -- Generate ------------------------------------------------------------------------------------------------
def test_generate_gives_samples_in_every_modality():
    at = open_page("generate")
    at.slider(key="gen-n").set_value(4)
    at.selectbox(key="gen-digit").set_value(7)
    rerun(at)
    grid = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert grid["layout"]["yaxis"]["ticktext"] == ["Farsi", "Kannada"]
    assert len(grid["layout"]["xaxis"]["ticktext"]) == 4
    assert len(at.get("audio")) == 4
    players = [c for c in at.columns if c.get("audio")]
    # At four to a row, beside the sidebar, each player had less than the ~300 px its controls need.
    assert len(players) == 4 and all(c.weight >= 0.5 for c in players), "each player gets half the width or more"
    first = grid["data"][0]["z"]
    at.number_input(key="gen-seed").set_value(1)
    rerun(at)
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["z"] != first, "the seed changes nothing"


# -- Latent explorer -----------------------------------------------------------------------------------------
def test_latent_explorer_traverses_the_last_input_and_interpolates(real_data, pipe):
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(first_of_class(real_data, "farsi", 2))
    rerun(at)
    at.switch_page("pages/latent.py")
    rerun(at)
    start = at.selectbox(key="trav-start")
    assert start.value == "last" and "Farsi drawing" in start.format_func(start.value)
    dims = at.multiselect(key="trav-dims-farsi-shared")
    shared = pipe.latent_layout["shared"]
    effects = pipe.dimension_effects(at.session_state["last_latent"]["z"], "farsi")[shared]
    assert len(dims.value) == 4 and list(dims.value) == list(np.argsort(-effects)[:4] + shared.start), \
        "the default dimensions are those that change the shown digit most"
    dims.set_value([0, 5])
    at.slider(key="trav-steps").set_value(5)
    rerun(at)
    grid = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert grid["layout"]["yaxis"]["ticktext"] == ["shared 0", "shared 5"]
    assert len(grid["layout"]["xaxis"]["ticktext"]) == 5
    assert len(at.get("audio")) == 2, "audio at a traversal point and at an interpolation step"
    caption = " ".join(c.value for c in at.caption)
    assert re.search(r"reads the steps as: 1( → \d)+", caption), caption


def ranking(pipe, latent, script="farsi") -> list[int]:
    """The library's own top dimensions of the shared latent for `script`, from `latent`."""
    shared = pipe.latent_layout["shared"]
    effects = pipe.dimension_effects(latent, script)[shared]
    return [int(d) for d in np.argsort(-effects)[:show.TRAVERSED_DIMS] + shared.start]


def test_latent_ranking_follows_the_starting_point_unless_picked_by_hand(pipe):
    at = open_page("latent")
    assert at.selectbox(key="trav-start").value == 0
    dims = at.multiselect(key="trav-dims-farsi-shared")
    assert list(dims.value) == ranking(pipe, pipe.label_posterior(0)[0])
    assert any(c.value.startswith("Ranked for digit 0, most effective first") for c in at.caption)
    at.selectbox(key="trav-start").set_value(5)
    rerun(at)
    five = ranking(pipe, pipe.label_posterior(5)[0])
    assert five != ranking(pipe, pipe.label_posterior(0)[0]), "the case needs rankings that differ"
    assert list(at.multiselect(key="trav-dims-farsi-shared").value) == five, "the ranking went stale"
    assert any(c.value.startswith("Ranked for digit 5, most effective first") for c in at.caption)

    mine = [five[0], next(d for d in range(pipe.latent_layout["shared"].stop) if d not in five)]
    at.multiselect(key="trav-dims-farsi-shared").set_value(mine)
    rerun(at)
    at.selectbox(key="trav-start").set_value(2)
    rerun(at)
    assert list(at.multiselect(key="trav-dims-farsi-shared").value) == mine, "a hand-picked choice was replaced"
    assert any(c.value.startswith("Your own choice") for c in at.caption)
    at.button(key="trav-dims-farsi-shared-again").click()
    rerun(at)
    assert list(at.multiselect(key="trav-dims-farsi-shared").value) == ranking(pipe, pipe.label_posterior(2)[0])


def test_latent_map_click_decodes_the_point(evaluated):
    at = open_page("latent")
    assert "not been evaluated" not in messages(at)
    point = {"curve_number": 7, "point_index": 0, "customdata": 140}
    at.session_state["latent-map"] = {"selection": {"points": [point],
                                                    "point_indices": [0], "box": [], "lasso": []}}
    rerun(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Test example of digit **7**" in text


# -- errors --------------------------------------------------------------------------------------------------
def test_a_missing_checkpoint_is_an_error_message(monkeypatch, tmp_path):
    monkeypatch.setenv("MVAE_CHECKPOINT", str(tmp_path / "nowhere"))
    at = open_page("draw")
    assert not at.exception
    assert at.error and "could not be loaded" in at.error[0].value


def test_an_unexpected_failure_shows_an_apology_not_a_traceback(monkeypatch, real_data):
    def broken(self, inputs):
        raise RuntimeError("internal detail that must not reach the page")

    monkeypatch.setattr(mvae.Pipeline, "predict", broken)
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(first_of_class(real_data, "farsi", 2))
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [state.APOLOGY]
    assert "internal detail" not in messages(at)


# -- configuration and packaging -----------------------------------------------------------------------------
def test_streamlit_config_hides_errors_and_limits_uploads():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert 1 <= config["server"]["maxUploadSize"] <= 50
    assert config["theme"]["primaryColor"]


def test_streamlit_reads_the_file_watcher_setting_and_polls_the_sources(monkeypatch):
    """Watchdog would watch the project folder recursively, .venv included; polling watches only the
    sources the app imports."""
    from streamlit import config
    from streamlit.watcher.path_watcher import get_default_path_watcher_class
    from streamlit.watcher.polling_path_watcher import PollingPathWatcher

    monkeypatch.delenv("STREAMLIT_SERVER_FILE_WATCHER_TYPE", raising=False)
    monkeypatch.chdir(ROOT)  # Streamlit reads .streamlit/config.toml from the working folder
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("server.fileWatcherType") == "poll"
        assert get_default_path_watcher_class() is PollingPathWatcher
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


def test_the_websocket_message_cap_fits_a_10_s_recording_and_the_pad(real_data):
    """The recorder sends its WAV as a JSON list of byte values; a 10 s take in Chromium (44.1 kHz,
    16-bit stereo) must fit under server.maxMessageSize, and so must the largest PNG the pad may send."""
    import tomllib

    cap = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxMessageSize"] * 10**6
    waves = [sf.read(path, dtype="float32")[0]
             for path in sorted((real_data / "fsdd" / "recordings").glob("*_theo_*.wav"))[:40]]
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(waves)[:10 * 8000], 8000, subtype="PCM_16", format="WAV")
    take = browser_recording(buf.getvalue())
    assert sf.info(io.BytesIO(take)).duration >= 9.99
    message = json.dumps(json.dumps(list(take), separators=(",", ":")))
    assert len(message) < cap, f"a 10 s recording is {len(message) / 1e6:.1f} MB, over the cap of {cap / 1e6:g} MB"
    assert len(png_url(bytes(inputs.MAX_DRAWING_BYTES))) < cap / 4
    assert cap <= 25 * 10**6, "a bigger cap lets one browser make the server hold and parse more"


def test_pages_hold_no_model_math():
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        source = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+torch", source, re.M), f"{path.name} imports torch"
        assert "st.navigation" in source or path.parent.name == "pages"


def test_dockerfile_is_a_cpu_non_root_streamlit_space():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "torch" not in text.replace("no torch", "")  # the app's lean requirements, nothing else
    assert re.search(r"^RUN pip install -r /tmp/requirements.txt$", text, re.M)
    assert re.search(r"useradd .*-u 1000", text) and re.search(r"^USER ", text, re.M)
    assert re.search(r"^HEALTHCHECK .*?_stcore/health", text, re.M | re.S)
    assert re.search(r"^EXPOSE 8501", text, re.M)
    cmd = re.search(r"^CMD (.*)$", text, re.M).group(1)
    assert json.loads(cmd) == ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0",
                               "--server.fileWatcherType=none"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "runs" in ignored


def test_faint_generated_digits_are_shown_at_full_ink_and_blank_ones_stay_blank():
    from webapp.figures import FAINTEST_SHOWN, stretched

    faint = np.zeros((28, 28), np.float32)
    faint[10:18, 12:16] = 0.4
    assert stretched(faint).max() == 1.0 and np.array_equal(stretched(faint) > 0, faint > 0)
    noise = np.full((28, 28), FAINTEST_SHOWN / 2, np.float32)
    assert np.array_equal(stretched(noise), noise)
    assert np.array_equal(stretched(np.zeros((28, 28))), np.zeros((28, 28)))


# -- a model with style latents ------------------------------------------------------------------------------
def test_draw_shows_the_missing_script_in_other_styles_and_draws_new_ones(real_data, tmp_path, monkeypatch):
    import torch

    from mvae.checkpoint import save_model
    from mvae.config import ModelConfig
    from mvae.model.model import MVAE

    torch.manual_seed(0)
    folder = tmp_path / "styled"
    save_model(folder, MVAE(ModelConfig(latent_dim=4, style_dim=3, hidden=16)), {})
    monkeypatch.setenv("MVAE_CHECKPOINT", str(folder))
    at = open_page("draw")
    at.session_state["draw-0"] = canvas_value(first_of_class(real_data, "farsi", 2))
    rerun(at)
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    styles = [g for g in grids if g["layout"].get("yaxis", {}).get("ticktext") == ["Kannada"]]
    assert len(styles) == 1, "the drawn script keeps its own style; the missing one is shown in new ones"
    assert len(styles[0]["layout"]["xaxis"]["ticktext"]) == names.STYLE_SAMPLES
    assert len(at.get("audio")) == 1 + names.STYLE_VOICES, "the reconstruction and the voices of the first columns"
    sentence = " ".join(m.value for m in at.markdown if "In other styles" in m.value)
    # It once said "each column draws a new hand and voice" over six columns and three voices.
    assert f"The first {names.STYLE_VOICES} voices are below" in sentence, sentence
    assert [c.value for c in at.caption if "the voice of" in c.value] == \
        [f"Speech, the voice of #{i + 1}" for i in range(names.STYLE_VOICES)]
    first = styles[0]["data"][0]["z"]
    at.button(key="style-draw-button").click()
    rerun(at)
    assert at.session_state["style-draw"] == 1
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    again = [g for g in grids if g["layout"].get("yaxis", {}).get("ticktext") == ["Kannada"]]
    assert again[0]["data"][0]["z"] != first, "New styles draws new ones"


def test_every_line_of_the_shipped_bar_is_named_in_words():
    from mvae.inference import DEFAULT_CHECKPOINT
    from mvae.store import EVAL_JSON
    from webapp.names import bar_line_name

    assert bar_line_name("coherence/kannada->farsi") == "coherence of Kannada → Farsi"
    assert bar_line_name("label_coherence/speech") == "coherence of label → speech"
    for key in json.loads((DEFAULT_CHECKPOINT / EVAL_JSON).read_text())["meets_bar"]:
        assert not re.search(r"\w_\w|\w/\w|->", bar_line_name(key)), key


def test_the_favicon_is_a_local_file_not_a_font_cdn_icon():
    """A ":material/…:" page icon makes the browser fetch an SVG from Google's font CDN on every page (an offline
    Space logs each failure); tests/test_browser.py checks in Chromium that no request leaves the server."""
    import ast

    tree = ast.parse((ROOT / "app.py").read_text())
    (call,) = [n for n in ast.walk(tree)
               if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "set_page_config"]
    icon = next(k.value for k in call.keywords if k.arg == "page_icon")
    assert not (isinstance(icon, ast.Constant) and str(icon.value).startswith(":")), "an icon from a font CDN"
    favicon = ROOT / "webapp" / "static" / "favicon.png"
    with Image.open(favicon) as image:
        assert image.format == "PNG" and max(image.size) <= 256


@pytest.fixture
def fifth_script():
    """A further image modality, registered for one test: no extra set, no glyphs, no judges."""
    from mvae import registry

    spec = registry.register(registry.Modality(
        name="devanagari", kind=registry.IMAGE, title="Devanagari", noun="Devanagari drawing", colour="#CC79A7",
        source=registry.ImageFiles("devanagari", {"train": "train", "test": "test"})))
    try:
        yield spec.name
    finally:
        registry.unregister(spec.name)


def test_the_words_come_from_the_registry_for_any_number_of_modalities(fifth_script):
    from mvae import registry
    from webapp import names, state

    shipped = registry.names()[:-1]
    model = (*shipped, fifth_script)
    labels = names.home_accuracy(model)
    assert list(labels) == [*model, "+".join(model)]
    assert len(model) == 4 and labels[fifth_script] == "Devanagari alone" and labels["+".join(model)] == "All four"
    assert names.home_accuracy(model[:2])["+".join(model[:2])] == "Both"
    assert names.noun(fifth_script) == "Devanagari drawing" and names.colour(fifth_script) == "#CC79A7"
    assert names.glyph(fifth_script, 3) == ""  # no script digits: the caption shows the class alone
    assert names.extra_set_name(f"{fifth_script}/dig") == f"{fifth_script} dig"
    assert names.bar_line_name("extra_accuracy/kannada/dig") == "accuracy on Dig-MNIST"
    assert state.drawn(model) == [n for n in model if registry.modality(n).kind == registry.IMAGE]
    assert state.spoken(model) == [n for n in model if registry.modality(n).kind == registry.SPEECH]
    assert state.drawn(model[::-1]) == state.drawn(model), "registry order, not the caller's"
