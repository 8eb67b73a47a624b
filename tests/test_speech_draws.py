"""mvae.evaluation.draws and benchmarks.speech_draws: which part of the latent each of the four decodings
draws, and what it reads."""

import numpy as np
import pytest
import torch

from benchmarks import speech_draws
from mvae.evaluation import draws
from tests.helpers import tiny_model_and_batch

SHARED, STYLE = 4, 3


def test_each_draw_moves_only_its_part_of_the_latent_by_the_same_noise():
    model, batch = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED)
    model.eval()
    latents = draws.drawn_latents(model, {"farsi": batch["farsi"]}, "speech",
                                         torch.Generator().manual_seed(0))
    mu, _ = model.full_posterior({"farsi": batch["farsi"]})
    layout = model.latent_layout()
    shared, style = layout["shared"], layout["speech"]
    assert torch.equal(latents["means"], mu)
    moved = {name: (z - mu).abs() > 0 for name, z in latents.items()}
    assert moved["shared drawn"][:, shared].all() and not moved["shared drawn"][:, SHARED:].any()
    assert moved["style drawn"][:, style].all()
    assert not moved["style drawn"][:, :style.start].any() and not moved["style drawn"][:, style.stop:].any()
    both = latents["shared drawn"] + latents["style drawn"] - mu
    assert torch.allclose(latents["both drawn"], both, atol=1e-6)
    # Speech is missing, so its style is the prior's: mean 0, scale 1, and the draw is the noise itself.
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(latents["style drawn"][:, style], noise[:, style], atol=1e-6)


def test_every_source_and_draw_is_read_by_every_speech_judge(monkeypatch):
    model, batch = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED, batch_size=20)
    batch["label"] = torch.arange(20) % 10
    monkeypatch.setattr(draws, "resynthesised", lambda bank, front_end: bank)

    class Says:
        def __init__(self, digit):
            self.digit = digit

        def predict(self, x):
            return torch.full((len(x),), self.digit)

    found = draws.readings(model, {"speech": Says(3), "speech_synthetic": Says(11), "farsi": Says(3)},
                                  batch, None)
    assert list(found) == ["label->speech", "farsi->speech", "kannada->speech", "speech->speech",
                           "real speech (vocoded)"]
    for direction, by in found.items():
        assert list(by) == (list(draws.DRAWS) if "->" in direction else [""])
        # A judge that always says 3 is right on the two 3s of twenty labels; one that says 11, never.
        assert all(row == pytest.approx({"speech": 0.1, "speech_synthetic": 0.0}) for row in by.values()), direction
    assert "| speech->speech | both drawn | 10.0 % | 0.0 % |" in speech_draws.table(found)
    assert np.isclose(found["real speech (vocoded)"][""]["speech"], 0.1)


def test_more_draws_average_the_drawn_columns_and_read_the_means_once(monkeypatch):
    model, batch = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED, batch_size=20)
    labels = torch.arange(20) % 10
    batch["label"] = labels
    monkeypatch.setattr(draws, "resynthesised", lambda bank, front_end: bank)

    class Alternates:
        """Right on its even-numbered readings, wrong on the others."""

        calls = 0

        def predict(self, x):
            self.calls += 1
            return labels if self.calls % 2 else (labels + 1) % 10

    judge = Alternates()
    found = draws.readings(model, {"speech": judge}, batch, None, draws=2)
    sources = [d for d in found if "->" in d]
    # Each source: the means once, then the three drawn columns twice; then the real recordings once.
    assert judge.calls == len(sources) * 7 + 1
    for i, direction in enumerate(sources):
        assert found[direction]["means"]["speech"] == (1.0 if i % 2 == 0 else 0.0), direction
        for draw in ("shared drawn", "style drawn", "both drawn"):
            assert found[direction][draw]["speech"] == pytest.approx(0.5), (direction, draw)


def test_sources_and_columns_narrow_what_is_decoded(monkeypatch):
    model, batch = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED, batch_size=20)
    batch["label"] = torch.arange(20) % 10
    monkeypatch.setattr(draws, "resynthesised", lambda bank, front_end: bank)

    class Counts:
        calls = 0

        def predict(self, x):
            self.calls += 1
            return torch.zeros(len(x), dtype=torch.long)

    judge = Counts()
    found = draws.readings(model, {"speech": judge}, batch, None, draws=3, sources=("speech",),
                                  columns=("means", "both drawn"))
    assert list(found) == ["speech->speech", "real speech (vocoded)"]
    assert list(found["speech->speech"]) == ["means", "both drawn"]
    # The means once, both drawn three times, the real recordings once.
    assert judge.calls == 1 + 3 + 1


def test_each_once_decodes_every_test_recording_once(synthetic_data):
    from mvae.config import AudioConfig
    from mvae.data.banks import load_banks
    from mvae.signals.audio import AudioFrontEnd

    model, _ = tiny_model_and_batch(style_dim=STYLE, latent_dim=SHARED)
    front_end = AudioFrontEnd(AudioConfig())
    speech = load_banks(synthetic_data, "test", front_end, ("speech",), progress=False)["speech"]
    every = draws.test_batch(model, synthetic_data, front_end, 10_000, seed=3, once="speech")
    assert len(every["speech"]) == len(speech.labels)
    rows = [int(np.flatnonzero((speech.items == x).all(dim=(1, 2)))[0]) for x in every["speech"]]
    assert sorted(rows) == list(range(len(speech.labels)))
    some = draws.test_batch(model, synthetic_data, front_end, 5, seed=3, once="speech")
    assert len(some["speech"]) == 5
