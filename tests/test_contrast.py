"""The log-mel contrast (the postfilter of decoded speech): what it does to a log-mel, alike in the torch model
and the lean runtime, and how mvae.evaluation.contrast chooses it and writes it into a checkpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mvae import checkpoint
from mvae.config import AudioConfig, ModelConfig
from mvae.evaluation.contrast import CANDIDATES, choose, mean_reading, tune
from mvae.model.export import TOLERANCE, stray
from mvae.model.model import MVAE
from mvae.runtime import LeanMVAE
from mvae.runtime.forward import contrasted
from mvae.signals.audio import AudioFrontEnd


def test_the_contrast_scales_each_bins_movement_over_time_and_keeps_its_mean():
    rng = np.random.default_rng(0)
    log_mel = rng.normal(-4, 3, (3, 8, 12)).astype(np.float32)
    sharper = contrasted(np, log_mel, 1.5, floor=-100.0)
    mean = log_mel.mean(-1, keepdims=True)
    np.testing.assert_allclose(sharper.mean(-1, keepdims=True), mean, atol=1e-5)
    np.testing.assert_allclose(sharper - mean, 1.5 * (log_mel - mean), atol=1e-5)
    assert contrasted(np, log_mel, 1.0, floor=-100.0) is log_mel
    np.testing.assert_allclose(contrasted(torch, torch.from_numpy(log_mel), 1.5, floor=-100.0).numpy(), sharper,
                               rtol=1e-5, atol=1e-5)


def test_no_bin_is_made_quieter_than_the_quietest_log_mel_the_front_end_makes():
    cfg = AudioConfig()
    floor = float(np.log(cfg.log_floor))
    log_mel = np.random.default_rng(0).normal(floor + 4, 1, (cfg.n_mels, cfg.n_frames)).astype(np.float32)
    log_mel[:, :20] = floor + 0.2  # a quiet start, which the contrast would push below the floor
    sharper = contrasted(np, log_mel, 2.0, floor)
    mean = log_mel.mean(-1, keepdims=True)
    unclamped = mean + 2.0 * (log_mel - mean)
    assert unclamped.min() < floor and sharper.min() == pytest.approx(floor)
    np.testing.assert_array_equal(sharper[unclamped >= floor], unclamped[unclamped >= floor])
    # What is heard does not change: a bin below the floor is silence, as one at the floor is (to within float32's
    # rounding of exp(log(floor)) - floor, 80 dB under the waveform's peak).
    front_end = AudioFrontEnd(cfg)
    np.testing.assert_allclose(front_end.waveform_from_log_mel(sharper), front_end.waveform_from_log_mel(unclamped),
                               atol=1e-4 * cfg.target_peak)


def test_the_torch_model_and_the_lean_runtime_decode_with_the_same_contrast(tmp_path):
    torch.manual_seed(0)
    model = MVAE(ModelConfig(latent_dim=4, style_dim=3, hidden=16, log_mel_contrast=1.7))
    checkpoint.save_model(tmp_path, model, {})
    lean, _ = LeanMVAE.load(tmp_path)
    latents = np.random.default_rng(0).normal(size=(6, model.cfg.full_latent_dim)).astype(np.float32)
    with torch.no_grad():
        want = model.outputs(torch.from_numpy(latents))
        model.cfg = replace(model.cfg, log_mel_contrast=1.0)
        flat = model.outputs(torch.from_numpy(latents))
    got = lean.outputs(latents)
    for name, value in want.items():
        assert stray(got[name], value.numpy()) <= TOLERANCE, name
    # Only the vocoded modality is postfiltered, and by the factor the checkpoint carries.
    assert torch.equal(want["farsi"], flat["farsi"]) and torch.equal(want["label"], flat["label"])
    mean = flat["speech"].mean(-1, keepdim=True)
    torch.testing.assert_close(want["speech"] - mean, 1.7 * (flat["speech"] - mean), atol=1e-4, rtol=1e-4)


def test_the_best_mean_reading_wins_and_a_tie_goes_to_the_decoders_own_output():
    def readings(*means):
        return {f"{c:g}": {"a": {"x@1": m, "y@1": m}, "b": {"x@1": m}} for c, m in zip(CANDIDATES, means)}

    assert choose(readings(0.5, 0.6, 0.7, 0.65, 0.6, 0.5)) == CANDIDATES[2]
    assert choose(readings(0.7, 0.7, 0.7, 0.7, 0.7, 0.7)) == 1.0
    assert choose(readings(0.5, 0.6, 0.6, 0.6, 0.5, 0.5)) == CANDIDATES[1]


def test_tuning_reads_every_direction_into_speech_and_writes_the_chosen_contrast(tmp_path, synthetic_data):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    checkpoint.save_model(folder, MVAE(ModelConfig(latent_dim=4, style_dim=3, hidden=16)), {"kept": 1})
    chosen, found = tune(folder, synthetic_data, items=20, progress=False)
    assert list(found) == [f"{c:g}" for c in CANDIDATES]
    expected = {f"{s}->speech@{t}" for s in ("label", "farsi", "kannada", "speech") for t in ("1", "0")}
    for by_judge in found.values():
        assert set(by_judge) == {"speech", "speech_synthetic"}
        assert all(set(d) == expected and all(0 <= v <= 1 for v in d.values()) for d in by_judge.values())
    assert mean_reading(found[f"{chosen:g}"]) == pytest.approx(max(mean_reading(b) for b in found.values()))
    model, meta = checkpoint.load_model(folder)
    assert model.cfg.log_mel_contrast == chosen
    assert meta["info"]["kept"] == 1 and meta["info"]["log_mel_contrast"]["readings"] == found
    assert LeanMVAE.load(folder)[0].cfg.log_mel_contrast == chosen
