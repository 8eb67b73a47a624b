"""The facade takes every documented input form and refuses bad ones with mvae.InputError."""

import io
import runpy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import mvae
from mvae import registry
from mvae.config import AudioConfig, ModelConfig
from mvae.inference import Decoded, Pipeline
from mvae.model.model import MVAE
from mvae.signals.audio import AudioFrontEnd, wav_bytes
from tests.helpers import tone


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return Pipeline(MVAE(ModelConfig(hidden=32, latent_dim=8)))


def canvas_digit(size=280, ink_in_alpha=True, offset=(40, 70), radius=60, width=18):
    """An RGBA canvas with a ring drawn large and off-centre, as a browser canvas returns it."""
    yy, xx = np.indices((size, size))
    dist = np.hypot(yy - size / 2 - offset[0], xx - size / 2 - offset[1])
    ink = (np.abs(dist - radius) < width / 2).astype(np.uint8) * 255
    rgba = np.zeros((size, size, 4), np.uint8)
    if ink_in_alpha:  # a transparent canvas with black strokes
        rgba[..., 3] = ink
    else:  # white ink on an opaque black background
        rgba[..., :3] = ink[..., None]
        rgba[..., 3] = 255
    return rgba


def png_bytes(array, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def image_forms():
    alpha = canvas_digit()
    white_on_black = canvas_digit(ink_in_alpha=False)
    grey = white_on_black[..., 0]
    return {
        "rgba, ink in alpha": alpha,
        "rgba, ink in colour": white_on_black,
        "rgb": white_on_black[..., :3],
        "grey uint8": grey,
        "grey float": grey.astype(np.float32) / 255,
        "grey float 0-255": grey.astype(np.float64),
        "dark on light": 255 - grey,
        "small": np.asarray(Image.fromarray(grey).resize((64, 64))),
        "pil": Image.fromarray(white_on_black),
        "png bytes": png_bytes(alpha),
        "jpeg bytes": png_bytes(white_on_black[..., :3], "JPEG"),
        "bool": grey > 0,
    }


@pytest.mark.parametrize("form", list(image_forms()))
@pytest.mark.parametrize("script", ["farsi", "kannada"])
def test_every_image_form_gives_the_same_digit(pipe, form, script):
    reference = pipe.predict({script: image_forms()["grey uint8"]}).inputs[script]
    pred = pipe.predict({script: image_forms()[form]})
    seen = pred.inputs[script]
    assert seen.shape == (28, 28) and seen.dtype == np.float32
    tolerance = 0.25 if form in ("jpeg bytes", "small", "bool") else 0.02
    assert np.abs(seen - reference).mean() < tolerance
    # The ring is centred by its centre of mass, whatever its place on the canvas.
    ys, xs = np.indices(seen.shape)
    assert abs((ys * seen).sum() / seen.sum() - 14) < 0.6 and abs((xs * seen).sum() / seen.sum() - 14) < 0.6


def check_prediction(pred, pipe):
    assert 0 <= pred.label <= 9 and pred.probs.shape == (10,)
    assert pred.probs.sum() == pytest.approx(1.0) and pred.label == int(pred.probs.argmax())
    for script in ("farsi", "kannada"):
        image = pred.images[script]
        assert image.shape == (28, 28) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    speech = pred.speech
    assert speech.sample_rate == 8000 and speech.waveform.ndim == 1 and len(speech.waveform) > 4000
    assert np.abs(speech.waveform).max() > 0.1  # audible
    assert speech.mel.shape == (pipe.config.audio.n_mels, pipe.config.audio.n_frames)
    assert sf.read(io.BytesIO(speech.wav_bytes))[0].shape[0] == len(speech.waveform)
    assert pred.latent_mean.shape == (pipe.latent_dim,) and pred.latent_logvar.shape == (pipe.latent_dim,)


def speech_forms():
    rng = np.random.default_rng(0)
    mono8k = tone(3, rng)
    t44 = np.interp(np.arange(int(len(mono8k) * 44100 / 8000)) * 8000 / 44100, np.arange(len(mono8k)), mono8k)
    stereo44 = np.stack([t44, 0.8 * t44], axis=1).astype(np.float32)

    def upsampled(factor: int) -> np.ndarray:
        return np.interp(np.arange(len(mono8k) * factor) / factor, np.arange(len(mono8k)), mono8k)

    return {
        "wav bytes 8k mono": wav_bytes(mono8k, 8000),
        "wav bytes 44.1k stereo": wav_bytes(stereo44, 44100),
        "wav bytes 48k 24-bit": wav_bytes(upsampled(6), 48000, "PCM_24"),
        "tuple 16k": (upsampled(2).astype(np.float32), 16000),
        "tuple stereo channels-first": (stereo44.T.copy(), 44100),
    }


@pytest.mark.parametrize("form", list(speech_forms()))
def test_every_speech_form(pipe, form):
    pred = pipe.predict({"speech": speech_forms()[form]})
    check_prediction(pred, pipe)
    assert pred.prepared_speech is not None and pred.inputs["speech"].shape == pred.speech.mel.shape
    reference = pipe.predict({"speech": speech_forms()["wav bytes 8k mono"]}).inputs["speech"]
    assert np.abs(pred.inputs["speech"] - reference).mean() < 0.5


@pytest.mark.parametrize("given", [("farsi",), ("kannada", "speech"), ("farsi", "kannada", "speech"), ("label",)])
def test_any_subset_gives_every_output(pipe, given):
    forms = {"farsi": canvas_digit(), "kannada": canvas_digit(ink_in_alpha=False),
             "speech": speech_forms()["wav bytes 8k mono"], "label": 4}
    pred = pipe.predict({name: forms[name] for name in given})
    check_prediction(pred, pipe)
    assert set(pred.experts) == set(given)
    # The fused posterior is at least as sure as each expert and as the prior.
    for _mu, logvar in pred.experts.values():
        assert np.all(pred.latent_logvar <= logvar + 1e-5)
    assert np.all(pred.latent_logvar <= 1e-6)


@pytest.mark.parametrize("inputs, message", [
    ({}, "at least one"),
    ({"farsi": None}, "at least one"),
    ({"farsi": np.zeros((280, 280, 4), np.uint8)}, "empty"),
    ({"kannada": np.full((280, 280), 255, np.uint8)}, "empty|whole canvas"),
    ({"farsi": np.zeros((5, 5, 5, 5))}, "shape"),
    ({"farsi": np.full((28, 28), np.nan)}, "NaN"),
    ({"farsi": "a string"}, "numpy array"),
    ({"farsi": b"not an image"}, "not a readable image"),
    ({"speech": wav_bytes(np.zeros(8000, np.float32), 8000)}, "silent"),
    ({"speech": wav_bytes(np.zeros(0, np.float32), 8000)}, "no recording"),
    ({"speech": b"RIFF....garbage"}, "not readable audio"),
    ({"speech": np.zeros(100)}, "bytes or a"),
    ({"speech": (np.zeros(10, np.float32), 8000)}, "only 1 ms long"),
    ({"label": 12}, "0 to 9"),
    ({"handwriting": np.zeros((28, 28))}, "Unknown input"),
])
def test_bad_inputs_raise_input_error(pipe, inputs, message):
    with pytest.raises(mvae.InputError, match=message):
        pipe.predict(inputs)


def test_input_error_is_a_value_error():
    assert issubclass(mvae.InputError, ValueError)


@pytest.mark.slow
def test_generate_traverse_interpolate(pipe):
    samples = pipe.generate(7, n=4, temperature=0.5, seed=1)
    assert samples.images["kannada"].shape == (4, 28, 28) and samples.probs.shape == (4, 10)
    assert len(samples.speech) == 4 and samples.speech[0].waveform.ndim == 1
    again = pipe.generate(7, n=4, temperature=0.5, seed=1)
    assert np.array_equal(samples.latents, again.latents)
    cold = pipe.generate(7, n=3, temperature=0.0)
    assert np.allclose(cold.latents, cold.latents[0])
    grid = pipe.traverse(np.zeros(pipe.latent_dim), dims=[0, 3], values=[-2, 0, 2])
    assert grid.latents.shape == (6, pipe.latent_dim)
    assert grid.latents[:3, 0].tolist() == [-2, 0, 2] and grid.latents[3:, 3].tolist() == [-2, 0, 2]
    path = pipe.interpolate(np.zeros(pipe.latent_dim), np.ones(pipe.latent_dim), steps=5)
    assert path.latents[2] == pytest.approx(np.full(pipe.latent_dim, 0.5))
    with pytest.raises(mvae.InputError):
        pipe.traverse(np.zeros(pipe.latent_dim), dims=[99], values=[0])
    with pytest.raises(mvae.InputError):
        pipe.generate(3, n=0)


def test_every_audio_modality_is_decoded_and_voiced():
    """A second modality of the audio kind, registered as one entry, is decoded beside the first rather than
    dropped: `log_mels` holds each, `voices(name)` voices any, and `mels` and `speech` stay the first's."""
    second = registry.register(registry.Modality(
        name="second_voice", kind=registry.SPEECH, title="second voice", noun="Second recording", colour="#000000",
        source=registry.Recordings("second_voice", {"test": range(0, 5)})))
    try:
        image, first = registry.names(registry.IMAGE)[0], registry.names(registry.SPEECH)[0]
        torch.manual_seed(0)
        two = Pipeline(MVAE(ModelConfig(modalities=(image, first, second.name), hidden=16, latent_dim=4)))
        decoded = two.generate(3, n=2, seed=0)
        audio = two.config.audio
        assert list(decoded.log_mels) == [first, second.name] and list(decoded.images) == [image]
        assert all(m.shape == (2, audio.n_mels, audio.n_frames) for m in decoded.log_mels.values())
        assert not np.allclose(decoded.log_mels[first], decoded.log_mels[second.name]), "one decoder's output twice"
        assert np.array_equal(decoded.mels, decoded.log_mels[first])
        voices = decoded.voices(second.name)
        assert len(voices) == 2 and np.array_equal(voices[1].mel, decoded.log_mels[second.name][1])
        assert voices[0].waveform.ndim == 1 and voices[0].sample_rate == audio.sample_rate
        assert np.array_equal(decoded.speech[0].mel, decoded.log_mels[first][0])
        # A page asks for the voices on every rerun: Griffin-Lim runs once per modality, not once per ask.
        assert decoded.voices(second.name) is voices and decoded.speech is decoded.voices(first)
        with pytest.raises(mvae.InputError, match="audio modalities decoded are"):
            decoded.voices(image)
        pred = two.predict({second.name: (tone(3, np.random.default_rng(0)), 8000)})
        assert list(pred.inputs) == [second.name] and list(pred.decoded.log_mels) == [first, second.name]
    finally:
        registry.unregister(second.name)


def test_a_model_without_audio_decodes_no_voices():
    front_end = AudioFrontEnd(AudioConfig())
    decoded = Decoded(np.zeros((2, 8), np.float32), {}, np.full((2, 10), 0.1, np.float32), {}, front_end)
    assert decoded.mels.shape == (0, front_end.cfg.n_mels, front_end.cfg.n_frames)
    assert decoded.speech == [] and decoded.labels.tolist() == [0, 0]


def test_the_facade_reads_the_study_where_the_sweep_writes_it(tmp_path):
    """The study's summary lies beside the models' folders (mvae.folders): written by the sweep from the
    repository's root, read by the facade from any model's folder, shipped by the Space at the same place."""
    sweep = pytest.importorskip("mvae.training.sweep")
    from mvae.folders import SWEEP_FROM_CHECKPOINT, SWEEP_RESULTS

    root = Path(__file__).resolve().parents[1]
    written = root / sweep.DEFAULT_OUT / SWEEP_RESULTS
    assert (root / "checkpoints" / "default" / SWEEP_FROM_CHECKPOINT).resolve() == written.resolve()
    assert written.relative_to(root).as_posix() == runpy.run_path(str(root / "space" / "build.py"))["SWEEP_RESULTS"]
    model = Pipeline(MVAE(ModelConfig(hidden=16, latent_dim=4)), folder=tmp_path / "model")
    assert model.sweep_results() is None
    (tmp_path / "model").mkdir()
    (tmp_path / sweep.DEFAULT_OUT.name).mkdir()
    (tmp_path / sweep.DEFAULT_OUT.name / SWEEP_RESULTS).write_text('{"best": [1]}')
    assert model.sweep_results() == {"best": [1]}
