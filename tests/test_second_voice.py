"""A second audio modality is one entry too, and every page voices it beside the first.

The entry reads the synthetic recordings of the speech modality under another name (the data layer loads them
again as a bank of its own), so the model has two audio modalities. A tiny model trained on it must decode and
voice both, and the pages that play sound (Generate, the Latent explorer, Draw's other styles) give each its
own players. Nothing outside this file names it.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import ROOT, make_dataset, open_page, plain_model_flags, tone
from tests.test_app import canvas_value, rerun

NEW = "echo"
SOURCES = ("mvae", "webapp", "pages", "benchmarks", "space", "app.py", "train.py")


@pytest.fixture(scope="module")
def second_voice(tmp_path_factory, one_torch_thread):
    from mvae import registry

    first = registry.modality(registry.names(registry.SPEECH)[0])
    registry.register(registry.Modality(name=NEW, kind=registry.SPEECH, title="echo", noun="Echo",
                                        colour="#56B4E9", source=first.source))
    try:
        data = make_dataset(tmp_path_factory.mktemp("data"), per_class_train=12, per_class_test=4)
        out = tmp_path_factory.mktemp("run") / "model"
        import train

        assert train.main(["--data-dir", str(data), "--out", str(out), *plain_model_flags(), "--epochs", "1",
                           "--pairs-per-epoch", "120", "--batch-size", "30", "--hidden", "16", "--latent-dim", "4",
                           "--style-dim", "2", "--speech-aug-copies", "0", "--num-threads", "1", "--no-progress",
                           "--no-cache"]) == 0
        yield out
    finally:
        registry.unregister(NEW)


def test_both_audio_modalities_are_decoded_and_voiced(second_voice):
    import mvae

    pipe = mvae.load(second_voice)
    voices = mvae.registry.names(mvae.registry.SPEECH)
    assert NEW in voices and set(voices) <= set(pipe.modalities)
    made = pipe.generate(4, n=3, seed=0)
    assert set(made.log_mels) == set(voices)
    for name in voices:
        clips = made.voices(name)
        assert len(clips) == 3 and all(c.wav_bytes[:4] == b"RIFF" for c in clips)
        assert all(np.isfinite(c.mel).all() for c in clips)
    with pytest.raises(mvae.InputError, match="audio modalities decoded are"):
        made.voices("label")


def test_generate_plays_every_audio_modality(second_voice, monkeypatch):
    from webapp import names

    monkeypatch.setenv("MVAE_CHECKPOINT", str(second_voice))
    at = open_page("generate")
    assert not at.exception, [e.value for e in at.exception]
    n = at.slider(key="gen-n").value
    heads = [c.value for c in at.caption if c.value.endswith("the spoken samples")]
    assert heads == [f"{names.noun(v)}: the spoken samples" for v in names.registry.names(names.registry.SPEECH)]
    assert len(at.get("audio")) == 2 * n


def test_the_latent_explorer_plays_every_audio_modality(second_voice, monkeypatch):
    monkeypatch.setenv("MVAE_CHECKPOINT", str(second_voice))
    at = open_page("latent")
    assert not at.exception, [e.value for e in at.exception]
    # A traversal point and an interpolation step are heard, each in both voices.
    assert len(at.get("audio")) == 4


def test_other_styles_voice_every_missing_audio_modality(second_voice, monkeypatch):
    from webapp import names

    monkeypatch.setenv("MVAE_CHECKPOINT", str(second_voice))
    at = open_page("draw")
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    at.session_state["draw-0"] = canvas_value(image)
    rerun(at)
    assert not at.exception, [e.value for e in at.exception]
    styled = [c.value for c in at.caption if "the voice of #" in c.value]
    voices = names.registry.names(names.registry.SPEECH)
    assert styled == [f"{names.noun(v)}, the voice of #{i + 1}" for v in voices for i in range(names.STYLE_VOICES)]


def test_speak_asks_which_audio_modality_heard_it(second_voice, monkeypatch):
    from webapp import names

    monkeypatch.setenv("MVAE_CHECKPOINT", str(second_voice))
    at = open_page("speak")
    heard_as = at.radio(key="speak-as")
    voices = names.registry.names(names.registry.SPEECH)
    assert list(heard_as.options) == [names.noun(v) for v in voices]
    buffer = io.BytesIO()
    sf.write(buffer, tone(6, np.random.default_rng(0)), 8000, format="WAV", subtype="PCM_16")
    heard_as.set_value(NEW)
    at.audio_input(key="speak-mic").set_value(("6.wav", buffer.getvalue(), "audio/wav"))
    rerun(at)
    assert [m.label for m in at.metric] == ["Predicted digit"]
    # Both voices come back: the recording's own modality reconstructed, and the other one generated.
    generated = [c.value for c in at.caption if c.value.startswith("Generated: ")]
    assert generated == [f"Generated: {names.modality_name(v)}" for v in voices]
    import mvae

    pipe = mvae.load(second_voice)
    as_new, as_first = (pipe.predict({name: buffer.getvalue()}).latent_mean for name in (NEW, voices[0]))
    assert np.allclose(at.session_state["last_latent"]["z"], as_new, atol=1e-5), "heard as the chosen modality"
    assert not np.allclose(as_new, as_first, atol=1e-3), "the two encoders disagree, so the check can fail"


def test_no_file_but_this_one_names_it():
    named = re.compile(rf"\b{NEW}\b", re.IGNORECASE)
    found = [str(f.relative_to(ROOT)) for source in SOURCES
             for f in ([ROOT / source] if (ROOT / source).is_file() else sorted((ROOT / source).rglob("*.py")))
             if named.search(f.read_text(encoding="utf-8"))]
    assert found == []
