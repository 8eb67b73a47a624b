"""Each modality owns its transforms: no code outside the registry branches on a modality's kind, the
model normalises inside `encode` exactly as callers used to by hand, and `predict` runs each encoder once."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import mvae
from mvae.config import ModelConfig
from mvae.inference import Pipeline
from mvae.model.modalities import Identity, Standardise
from mvae.model.model import MVAE
from mvae.model.poe import product_of_experts
from mvae.runtime import ops
from tests.helpers import ROOT, class_image, tone

# A test of a modality's name or of its membership in the image scripts, in either order.
BRANCH = re.compile(r"""["']speech["']\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*["']speech["']"""
                    r"""|\bin\s+IMAGE_MODALITIES\b|(==|!=)\s*LABEL\b""")
OWNERS = {"mvae/model/modalities.py", "mvae/kinds.py", "mvae/config.py"}
# The study scores a trial by the mean label accuracy from each modality alone: the label is no input.
ALLOWED = {"mvae/training/sweep.py"}


def sources():
    for folder in ("mvae", "webapp", "pages", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield from (ROOT / "app.py", ROOT / "train.py")


def test_no_modality_branch_outside_the_modality_code():
    found = []
    for path in sources():
        name = path.relative_to(ROOT).as_posix()
        if name in OWNERS | ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if BRANCH.search(line.split("#")[0]):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "branch on a modality's kind outside mvae/model/modalities.py:\n" + "\n".join(found)


def test_the_branch_pattern_finds_what_it_is_for():
    for line in ('if name == "speech":', "if name in IMAGE_MODALITIES:", "x if 'speech' in given else y",
                 "if n != LABEL:"):
        assert BRANCH.search(line), line
    assert not BRANCH.search('pipe.predict({"speech": audio})')


def statistics_model(seed: int = 0) -> MVAE:
    model = MVAE(ModelConfig()).eval()
    g = torch.Generator().manual_seed(seed)
    model.speech_norm.set_stats(torch.randn(64, generator=g) - 4.0, torch.rand(64, generator=g) + 0.5)
    return model


def test_normalisers_keep_the_checkpoint_keys():
    model = MVAE(ModelConfig())
    assert isinstance(model.speech_norm, Standardise) and isinstance(model.norm("farsi"), Identity)
    norm_keys = [k for k in model.state_dict() if "_norm." in k]
    assert norm_keys == ["speech_norm.mean", "speech_norm.std"]
    assert list(model.state_dict())[-2:] == norm_keys  # where they were, after the decoders


def test_encode_normalises_as_callers_did_by_hand():
    model = statistics_model()
    g = torch.Generator().manual_seed(1)
    raw = {"farsi": torch.rand(5, 28, 28, generator=g), "speech": torch.randn(5, 64, 64, generator=g) * 3 - 4}
    by_hand = {"farsi": raw["farsi"], "speech": (raw["speech"] - model.speech_norm.mean) / model.speech_norm.std}
    with torch.no_grad():
        encoded = model.encode(raw)
        for i, name in enumerate(encoded.names):
            mu, logvar = model.encoders[name](by_hand[name])
            assert torch.equal(encoded.mu[i], mu[:, :model.cfg.latent_dim])
            assert torch.equal(encoded.logvar[i], logvar[:, :model.cfg.latent_dim])
        assert torch.equal(encoded.inputs["speech"], by_hand["speech"])
        assert not torch.allclose(by_hand["speech"], raw["speech"])  # the statistics did something


def test_to_data_inverts_each_modality_as_before():
    model = statistics_model()
    z = torch.randn(4, model.full_latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded = model.decode(z)
        out = model.outputs(z)
    assert torch.equal(out["farsi"], torch.sigmoid(decoded["farsi"]))
    assert torch.equal(out["speech"], decoded["speech"] * model.speech_norm.std + model.speech_norm.mean)
    assert torch.equal(out["label"], torch.softmax(decoded["label"], -1))


def test_standardise_fit_gives_per_bin_statistics():
    items = torch.randn(30, 64, 20) * torch.linspace(0.5, 2, 64)[:, None] + torch.arange(64.0)[:, None]
    norm = Standardise(64)
    norm.fit(items)
    assert torch.allclose(norm.mean.flatten(), items.mean(dim=(0, 2)))
    assert torch.allclose(norm.std.flatten(), items.std(dim=(0, 2)))


@pytest.mark.parametrize("name", ["default", "plain-poe"])
def test_shipped_checkpoint_predicts_as_with_manual_normalisation(name):
    folder = ROOT / "checkpoints" / name
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"no checkpoint in {folder}")
    from mvae import checkpoint

    shipped_pipeline = mvae.load(folder)
    model, _ = checkpoint.load_model(folder)
    assert not torch.allclose(model.speech_norm.std, torch.ones_like(model.speech_norm.std))  # loaded stats
    rng = np.random.default_rng(3)
    pred = shipped_pipeline.predict({"farsi": class_image(4, rng, "farsi"), "speech": (tone(4, rng), 8000)})
    batch = {n: torch.as_tensor(v)[None] for n, v in pred.inputs.items()}
    given = [n for n in model.names if n in batch]
    with torch.no_grad():
        mus, logvars = [], []
        for name in given:  # as the facade did before: standardise the log-mel by hand, then encode
            x = batch[name]
            if name == "speech":
                x = (x - model.speech_norm.mean) / model.speech_norm.std
            mu, logvar = model.encoders[name](x)
            mus.append(mu[:, :model.cfg.latent_dim])
            logvars.append(logvar[:, :model.cfg.latent_dim])
        shared, _ = product_of_experts(torch.stack(mus), torch.stack(logvars))
        shared = shared[0]
    assert given == ["farsi", "speech"]
    np.testing.assert_allclose(pred.latent_mean[:model.cfg.latent_dim], shared[0].numpy(), atol=1e-4)
    assert pred.label == int(model.classify(shared).argmax())


def test_predict_runs_each_given_encoder_once(monkeypatch):
    """Every network of the lean runtime runs through `ops.run`: predict gives it each given encoder once."""
    pipe = Pipeline(MVAE(ModelConfig()))
    calls = {n: 0 for n in pipe.model.names}
    run = ops.run

    def counted(steps, x):
        for name, encoder in pipe.model.encoders.items():
            calls[name] += steps is encoder
        return run(steps, x)

    monkeypatch.setattr(ops, "run", counted)
    rng = np.random.default_rng(0)
    pipe.predict({"farsi": class_image(2, rng, "farsi"), "speech": (tone(2, rng), 8000)})
    assert calls == {"farsi": 1, "kannada": 0, "speech": 1, "label": 0}
    pipe.predict({"kannada": class_image(5, rng, "kannada")})
    assert calls == {"farsi": 1, "kannada": 1, "speech": 1, "label": 0}


def test_checkpoint_written_before_of_a_model_without_speech_still_loads(tmp_path):
    """Before each modality owned its normaliser, every model held the log-mel statistics."""
    from mvae import checkpoint

    model = MVAE(ModelConfig(modalities=("farsi", "kannada")))
    assert not any(k.startswith("speech_norm.") for k in model.state_dict())
    model.add_module("speech_norm", Standardise(model.cfg.audio.n_mels))  # as the model was built before
    checkpoint.save_model(tmp_path, model, {})
    loaded, _ = checkpoint.load_model(tmp_path)
    assert loaded.input_names == ("farsi", "kannada")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])
