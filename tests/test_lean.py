"""The lean runtime (numpy, no torch) against the torch model and torchaudio: the same labels on every
test split, outputs within 1e-4 (relative to their scale where it exceeds 1) for every input form and every
subset of modalities, and an app path that never imports torch."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from PIL import Image

import mvae
from mvae import checkpoint
from mvae.config import LABEL, AudioConfig, ModelConfig
from mvae.data.banks import load_banks
from mvae.errors import CheckpointError
from mvae.model.export import TOLERANCE, stray
from mvae.model.model import MVAE
from mvae.runtime import LeanMVAE, ops
from mvae.signals.audio import AudioFrontEnd, wav_bytes
from mvae.store import MODEL_FILE
from tests.helpers import class_image, refusing_imports, tone

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [p.name for p in sorted((ROOT / "checkpoints").iterdir()) if (p / MODEL_FILE).is_file()]


def both(name: str):
    folder = ROOT / "checkpoints" / name
    model, _ = checkpoint.load_model(folder)
    return model, LeanMVAE.load(folder)[0]


def close(got, want) -> None:
    want = want.detach().cpu().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.shape == want.shape
    assert stray(np.asarray(got), want) <= TOLERANCE


# -- the networks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_every_subset_decodes_as_the_torch_model_does(name):
    """Random but plausible items of every modality, fused over every subset (the label included)."""
    model, lean = both(name)
    rng = np.random.default_rng(0)
    batch = {s: np.stack([class_image(d, rng, s) for d in range(10)]).astype(np.float32) / 255.0
             for s in ("farsi", "kannada")}
    batch["speech"] = model.norm("speech").inverse(torch.randn(10, 64, 64, generator=torch.Generator().manual_seed(0)))
    batch["speech"] = batch["speech"].numpy()
    batch[LABEL] = np.arange(10)
    for r in range(1, len(model.names) + 1):
        for subset in itertools.combinations(model.names, r):
            given = {n: batch[n] for n in subset}
            mu, logvar = lean.full_posterior(given)
            with torch.no_grad():
                want_mu, want_logvar = model.full_posterior({n: torch.as_tensor(v) for n, v in given.items()})
                want = model.outputs(want_mu)
            close(mu, want_mu)
            close(logvar, want_logvar)
            for target, value in lean.outputs(mu).items():
                close(value, want[target])


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_the_same_labels_on_every_test_split(name, real_data):
    model, lean = both(name)
    banks = load_banks(real_data, "test", AudioFrontEnd(model.cfg.audio), model.input_names, progress=False)
    for modality, bank in banks.items():
        items = bank.items.numpy()
        for start in range(0, len(items), 2000):
            chunk = items[start:start + 2000]
            mu, logvar = lean.full_posterior({modality: chunk})
            with torch.no_grad():
                want_mu, want_logvar = model.full_posterior({modality: torch.from_numpy(chunk)})
                want = model.outputs(want_mu, [LABEL])[LABEL].numpy()
            got = lean.outputs(mu, [LABEL])[LABEL]
            close(mu, want_mu)
            close(logvar, want_logvar)
            assert np.array_equal(got.argmax(1), want.argmax(1)), f"{modality}: a label differs"
            close(got, want)


def canvas(image: np.ndarray) -> np.ndarray:
    """A 28x28 digit as the drawing pad sends it: 280x280 RGBA, white ink on black."""
    big = np.asarray(Image.fromarray(image).resize((280, 280)))
    return np.dstack([big, big, big, np.full_like(big, 255)])


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_every_input_form_predicts_as_the_torch_model_does(shipped_pipeline):
    """The facade prepares the input (same code either way), then runs the lean model: its answers are the
    torch model's on what it prepared, whatever form the input came in."""
    model, _ = checkpoint.load_model(ROOT / "checkpoints" / "default")
    rng = np.random.default_rng(1)
    digit = class_image(3, rng, "farsi")
    wave = tone(3, rng)
    int16 = (wave * 20000).astype(np.int16)
    forms = {
        "farsi": [digit, digit.astype(np.float32) / 255, canvas(digit), png(digit)],
        "kannada": [class_image(3, rng, "kannada"), png(class_image(3, rng, "kannada"))],
        "speech": [wav_bytes(wave, 8000), (wave, 8000), (int16, 8000), (np.stack([wave, wave], 1), 8000),
                   (wave.astype(np.float64), 16000)],
        LABEL: [3, np.int64(3)],
    }
    for name, values in forms.items():
        for value in values:
            for others in ({}, {"kannada": class_image(3, rng, "kannada")} if name != "kannada" else {}):
                pred = shipped_pipeline.predict({name: value, **others})
                batch = {n: torch.as_tensor(v)[None] for n, v in pred.inputs.items()}
                if name == LABEL:
                    batch[LABEL] = torch.tensor([3])
                with torch.no_grad():
                    mean, logvar = model.full_posterior(batch)
                    out = model.outputs(mean)
                close(pred.latent_mean, mean[0])
                close(pred.latent_logvar, logvar[0])
                close(pred.probs.astype(np.float32), out[LABEL][0])
                assert pred.label == int(out[LABEL][0].argmax())
                for script, image in pred.images.items():
                    close(image, out[script][0])
                close(pred.decoded.mels[0], out["speech"][0])


def test_generation_and_traversals_decode_as_the_torch_model_does(shipped_pipeline):
    model, _ = checkpoint.load_model(ROOT / "checkpoints" / "default")
    for decoded in (shipped_pipeline.generate(4, n=5, seed=2),
                    shipped_pipeline.traverse(np.zeros(shipped_pipeline.latent_dim), [0, 20], [-2.0, 0.0, 2.0])):
        with torch.no_grad():
            want = model.outputs(torch.from_numpy(decoded.latents))
        for script, images in decoded.images.items():
            close(images, want[script])
        close(decoded.mels, want["speech"])
        close(decoded.probs, want[LABEL])


# -- the audio front end ------------------------------------------------------------------------------------
CFG = AudioConfig()


def test_the_log_mel_is_torchaudios():
    waves = np.random.default_rng(0).standard_normal((3, CFG.num_samples)).astype(np.float32) * 0.2
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=CFG.sample_rate, n_fft=CFG.n_fft, hop_length=CFG.hop_length,
                                               n_mels=CFG.n_mels, f_min=CFG.f_min, f_max=CFG.f_max, power=2.0)
    want = torch.log(mel(torch.from_numpy(waves)) + CFG.log_floor)
    close(AudioFrontEnd(CFG).log_mel(waves), want)


def test_the_inverse_mel_scale_and_griffin_lim_are_torchaudios():
    """Exactly torchaudio's algorithm: equal to float32 rounding over a few iterations. Over many, Griffin-Lim
    amplifies rounding in the phase of near-silent bins, so the full-length result is held to the same sound:
    its spectrogram, not its samples."""
    fe = AudioFrontEnd(CFG)
    rng = np.random.default_rng(1)
    mels = fe.log_mel(np.stack([fe.fix_length(fe.normalise(tone(d, rng))) for d in (2, 7)]))
    power = np.maximum(np.exp(mels) - CFG.log_floor, 0)
    inverse = torchaudio.transforms.InverseMelScale(n_stft=CFG.n_fft // 2 + 1, n_mels=CFG.n_mels,
                                                    sample_rate=CFG.sample_rate, f_min=CFG.f_min, f_max=CFG.f_max,
                                                    driver="gelsd")(torch.from_numpy(power))
    close(np.maximum(fe._unmel @ power, 0), inverse)
    one = AudioFrontEnd(AudioConfig(griffin_lim_iters=1))
    close(one.griffin_lim(inverse.numpy()), torchaudio.functional.griffinlim(
        inverse, torch.hann_window(CFG.n_fft), CFG.n_fft, CFG.hop_length, CFG.n_fft, 2.0, 1, 0.99, None, False))
    full = torchaudio.transforms.GriffinLim(n_fft=CFG.n_fft, hop_length=CFG.hop_length, power=2.0,
                                            n_iter=CFG.griffin_lim_iters, rand_init=False)
    want, exact = full(inverse), full(inverse.double())
    ours = fe.griffin_lim(inverse.numpy())
    # torchaudio in float32 strays as far from its own float64 result: the rounding, not the algorithm.
    assert stray(ours, exact.numpy()) <= 1.5 * stray(want.numpy(), exact.numpy())
    loud = mels > mels.max() - 40  # within 40 dB of the loudest bin
    heard = fe.log_mel(ours[:, :CFG.num_samples]) - fe.log_mel(want.numpy()[:, :CFG.num_samples])
    assert np.abs(heard[loud]).mean() < 0.05, "the two resyntheses should sound the same"


def test_a_time_conv_decoder_decodes_as_the_torch_model_does(tmp_path):
    """The 1-D transposed convs along a log-mel's frames (speech_decoder="conv1d"), saved and loaded as a user
    would, for the digits' decoders as well."""
    cfg = ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, style_dim=3, conv_channels=4,
                      speech_decoder="conv1d", speech_conv_channels=8, image_decoder="conv1d")
    model = MVAE(cfg).eval()
    assert any(isinstance(m, torch.nn.ConvTranspose1d) for m in model.decoders["speech"].modules())
    checkpoint.save_model(tmp_path, model, {})
    lean = LeanMVAE.load(tmp_path)[0]
    assert any(step["op"] == "conv_transpose1d" for step in lean.decoders["speech"])
    latents = torch.randn(5, model.full_latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.outputs(latents)
    got = lean.outputs(latents.numpy())
    assert got["speech"].shape == (5, 64, 64) and got["farsi"].shape == (5, 28, 28)
    for name, value in got.items():
        close(value, want[name])


def test_a_wider_speech_decoder_alone_runs_as_the_torch_model_does(tmp_path):
    """speech_hidden widens the speech decoder and nothing else; the runtime reads the width from the file."""
    cfg = ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, style_dim=3, conv_channels=4,
                      speech_hidden=40)
    model = MVAE(cfg).eval()
    widths = {name: {m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)}
              for name, net in model.decoders.items()}
    assert 40 in widths["speech"] and 40 not in widths["farsi"] | widths["kannada"]
    assert all(m.out_features != 40 for net in model.encoders.values() for m in net.modules()
               if isinstance(m, torch.nn.Linear))
    checkpoint.save_model(tmp_path, model, {})
    lean = LeanMVAE.load(tmp_path)[0]
    latents = torch.randn(5, model.full_latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model.outputs(latents)
    got = lean.outputs(latents.numpy())
    for name, value in got.items():
        close(value, want[name])


def test_the_transposed_1d_conv_is_torchs():
    rng = np.random.default_rng(0)
    x, weight, bias = (rng.standard_normal(s).astype(np.float32) for s in ((3, 5, 7), (5, 4, 3), (4,)))
    for stride, padding in ((1, 0), (2, 1), (3, 1)):
        want = torch.nn.functional.conv_transpose1d(*map(torch.as_tensor, (x, weight, bias)), stride=stride,
                                                    padding=padding)
        close(ops.conv_transpose1d(x, weight, bias, stride, padding), want)


# -- writing and reading the program ------------------------------------------------------------------------
def test_a_program_that_strays_from_the_model_is_never_written(tmp_path, monkeypatch):
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    monkeypatch.setattr(ops, "silu", lambda x: np.maximum(x, 0))  # a ReLU where the model has SiLU
    with pytest.raises(RuntimeError, match="strays"):
        checkpoint.save_model(tmp_path, model, {})
    assert not any(tmp_path.iterdir())


def test_a_checkpoint_without_a_program_says_how_to_convert_it(tmp_path):
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    tensors = {k: v for k, v in model.state_dict().items()}
    from mvae.config import to_dict

    checkpoint.atomic_write(tmp_path / MODEL_FILE, checkpoint.pack(tensors, {"model_config": to_dict(model.cfg),
                                                                              "dtype": "float32", "info": {}}))
    with pytest.raises(CheckpointError, match="mvae.upgrade"):
        mvae.load(tmp_path)
    checkpoint.upgrade(tmp_path)
    assert mvae.load(tmp_path).predict({LABEL: 4}).probs.shape == (10,)


@pytest.mark.parametrize("edit", ["unknown op", "huge", "wrong shape", "extra setting"])
def test_a_tampered_program_is_refused_before_its_tensors_are_read(tmp_path, edit):
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    checkpoint.save_model(tmp_path, model, {})
    tensors, meta = checkpoint.unpack(tmp_path / MODEL_FILE)
    steps = meta["runtime"]["encoders"]["farsi"]
    if edit == "unknown op":
        steps[1]["op"] = "gelu"
    elif edit == "huge":
        steps[1]["tensors"]["weight"]["shape"] = [10**7, 10**7]
    elif edit == "wrong shape":
        first = next(s for s in steps if s["op"] == "linear")
        first["tensors"]["weight"]["shape"] = first["tensors"]["weight"]["shape"][::-1]
    else:
        steps[0]["stride"] = 2
    (tmp_path / "model.json").unlink()
    checkpoint.atomic_write(tmp_path / MODEL_FILE, checkpoint.pack({k: torch.from_numpy(v.copy())
                                                                    for k, v in tensors.items()}, meta))
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        mvae.load(tmp_path)


# -- no torch on the app's path -----------------------------------------------------------------------------
NO_TORCH = refusing_imports(("torch", "torchaudio", "tqdm", "optuna", "scipy", "safetensors"),
                            "the lean app imported")


APP_WITHOUT_TORCH = """
    import numpy as np
    from streamlit.testing.v1 import AppTest
    import mvae
    from webapp import figures, inputs, names, show, state

    pipe = mvae.load()
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    tone = np.sin(2 * np.pi * 300 * np.arange(8000) / 16000).astype(np.float32)
    pred = pipe.predict({"farsi": digit, "speech": (tone, 16000)})
    assert pred.speech.waveform.size and pred.images["kannada"].shape == (28, 28)
    pipe.generate(5, n=3).speech
    pipe.traverse(pred.latent_mean, [0, 1], [-1.0, 1.0])
    pipe.interpolate(pred.latent_mean, pipe.label_posterior(2)[0], 4)
    pipe.restyle(pred.latent_mean, keep=("farsi",), n=2)
    pipe.dimension_effects(pred.latent_mean, "farsi")
    assert pipe.latent_map is not None and pipe.report() is not None
    at = AppTest.from_file("app.py", default_timeout=120)
    at.run()
    for page in ("home", "draw", "speak", "combine", "generate", "latent", "report"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
    assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "torchaudio")]
    print("lean ok", mvae.__file__)
"""


def run_without_torch(folder: Path) -> str:
    script = textwrap.dedent(NO_TORCH) + textwrap.dedent(APP_WITHOUT_TORCH)
    done = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "lean ok" in done.stdout, done.stderr[-3000:]
    return done.stdout


def test_the_app_and_the_facade_run_without_torch():
    """Every page, and every facade call the pages make, with torch, torchaudio, tqdm, optuna, scipy and
    safetensors unimportable (the app installs none of them)."""
    run_without_torch(ROOT)


def test_the_static_space_bundle_holds_all_the_app_needs(tmp_path):
    """space/build.py collects the files the browser mounts; run from those files alone, the app works."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, str(ROOT / "space" / "build.py"), "--out", str(dist)], check=True,
                   capture_output=True, timeout=120)
    out = run_without_torch(dist / "files")
    assert str(dist / "files" / "mvae") in out, "the app should have run from the bundle, not the repository"
    html = (dist / "index.html").read_text()
    assert '"entrypoint": "app.py"' in html and "mvae/runtime/ops.py" in html and "torch" not in html
    assert (dist / "README.md").read_text().startswith("---\ntitle:") and "sdk: static" in html + \
        (dist / "README.md").read_text()


def test_the_lean_requirements_hold_no_torch():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    names = {line.split("=")[0].split(">")[0].split("<")[0].strip().lower() for line in lines if line}
    assert names and not names & {"torch", "torchaudio", "tqdm", "optuna", "scipy", "safetensors", "-r"}
    train = (ROOT / "requirements-train.txt").read_text()
    assert "-r requirements.txt" in train and "torch==" in train


def test_upgrading_reaches_the_judges_without_making_them_a_model(tmp_path):
    import shutil

    from mvae.upgrade import main

    judges = tmp_path / "judges.safetensors"
    shutil.copy(ROOT / "checkpoints" / "judges" / "judges.safetensors", judges)
    before = judges.read_bytes()
    assert main([str(judges)]) == 0
    assert judges.read_bytes() == before and "runtime" not in checkpoint.unpack(judges)[1]
