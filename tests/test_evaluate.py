"""The evaluator's numbers on constructed cases, and its files on a small trained model."""

import json

import numpy as np
import pytest
import torch

from mvae.config import LABEL
from mvae.evaluate import EVAL_JSON, EVAL_MD, coherence, direction_key, directions, evaluate_checkpoint, meets_bar


def balanced_batches(n_batches=4, size=50, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        labels = torch.as_tensor(rng.permutation(np.arange(size) % 10))
        # Every modality carries its label in its first pixel, so an oracle can read it back.
        yield {name: labels.float()[:, None, None].expand(size, 4, 4).clone() for name in ("farsi", "kannada", "speech")} | {LABEL: labels}


def judge(target, made):
    return made[:, 0, 0].round().long()


def test_directions_are_six_pairs_and_three_to_the_third():
    got = directions()
    assert len(got) == 9 and len(set(got)) == 9
    assert (("farsi",), "speech") in got and (("kannada", "speech"), "farsi") in got
    assert all(t not in s for s, t in got)


def test_a_perfect_oracle_scores_100_percent():
    def oracle(sources, target):
        return next(iter(sources.values()))  # the source already shows the label
    scores = coherence(oracle, judge, balanced_batches(), directions())
    assert scores == {direction_key(*d): 1.0 for d in directions()}


def test_a_constant_generator_scores_chance():
    def constant(sources, target):
        return torch.full((len(next(iter(sources.values()))), 4, 4), 3.0)
    scores = coherence(constant, judge, balanced_batches(), directions())
    assert all(v == pytest.approx(0.1) for v in scores.values())


def test_a_generator_that_is_off_by_one_scores_zero():
    def shifted(sources, target):
        return (next(iter(sources.values())) + 1) % 10
    assert set(coherence(shifted, judge, balanced_batches(), directions()).values()) == {0.0}


def test_bar_checks_can_fail():
    report = {"unimodal_accuracy": {"farsi": 0.995, "kannada": 0.98, "speech": 0.99},
              "extra_accuracy": {"kannada/dig": 0.9, "farsi/remaining": 0.99},
              "accuracy": {"farsi": 0.995, "farsi+kannada": 0.999, "farsi+kannada+speech": 0.9999},
              "coherence": {"farsi->kannada": 0.97, "kannada->farsi": 0.96, "farsi+kannada->speech": 0.5}}
    assert all(meets_bar(report).values())
    report["coherence"]["kannada->farsi"] = 0.94
    report["unimodal_accuracy"]["speech"] = 0.97
    checks = meets_bar(report)
    assert not checks["coherence"] and not checks["unimodal_accuracy/speech"] and checks["unimodal_accuracy/farsi"]


def test_evaluator_writes_its_files(synthetic_data, tmp_path):
    from mvae.config import AudioConfig, ModelConfig, TrainConfig
    from mvae.judges import save_judges, train_judges
    from mvae.training import Trainer, load_training_data

    model_cfg = ModelConfig(hidden=64, latent_dim=8)
    train_cfg = TrainConfig(epochs=1, batch_size=64, pairs_per_epoch=600, speech_aug_copies=0, image_aug=0.0)
    Trainer(model_cfg, train_cfg, load_training_data(synthetic_data, model_cfg, train_cfg, progress=False),
            tmp_path / "model", progress=False).fit()
    judges, judge_report = train_judges(synthetic_data, AudioConfig(), epochs=1, progress=False)
    save_judges(tmp_path / "judges", judges, judge_report, AudioConfig())

    report = evaluate_checkpoint(tmp_path / "model", synthetic_data, tmp_path / "judges", speech_pairs=40,
                                 progress=False)
    written = json.loads((tmp_path / "model" / EVAL_JSON).read_text())
    assert written["coherence"] == report["coherence"] and len(report["coherence"]) == 9
    assert report["coherence_pairs"]["speech_target"] == 40
    assert set(report["accuracy"]) == {"farsi", "kannada", "speech", "farsi+kannada", "farsi+speech",
                                      "kannada+speech", "farsi+kannada+speech", "label"}
    assert all(0.0 <= v <= 1.0 for v in report["coherence"].values())
    assert len(report["kl_per_dim"]) == 8 and 0 <= report["active_units"] <= 8
    assert set(report["extra_accuracy"]) == {"kannada/dig", "farsi/remaining"}
    table = (tmp_path / "model" / EVAL_MD).read_text()
    assert "Coherence farsi → kannada" in table and "Dig-MNIST" in table
    import mvae
    pipe = mvae.load(tmp_path / "model")
    assert pipe.latent_map is not None and pipe.latent_map.coords.shape[1] == 2
    assert pipe.report()["active_units"] == report["active_units"]
    projected = pipe.latent_map.project(pipe.latent_map.latents[:5])
    assert np.allclose(projected, pipe.latent_map.coords[:5], atol=1e-4)


def test_class_averages_mix_two_to_eight_items_of_the_right_class():
    from mvae.data.paired import Bank
    from mvae.judges import MAX_AVERAGED, class_averages

    # Item i of class c is one bright pixel at (c, i): an average shows which items it mixed.
    items = torch.zeros(10 * 20, 10, 20)
    labels = np.repeat(np.arange(10), 20)
    items[torch.arange(200), torch.as_tensor(labels), torch.arange(200) % 20] = 1.0
    wanted = torch.as_tensor(np.arange(300) % 10)
    soft = class_averages(Bank(items, labels), wanted, torch.Generator().manual_seed(0))
    rows_with_ink = (soft > 0).any(dim=2).float().argmax(dim=1)
    assert torch.equal(rows_with_ink, wanted)
    assert torch.allclose(soft.sum(dim=(1, 2)), torch.ones(300))
    mixed = (soft > 0).sum(dim=(1, 2))
    assert mixed.max() <= MAX_AVERAGED and (mixed >= 2).float().mean() > 0.8


def test_image_judge_reads_a_faint_digit_like_a_bold_one():
    from mvae.judges import Judge

    judge = Judge().eval()
    x = torch.rand(6, 28, 28)
    with torch.no_grad():
        assert torch.allclose(judge(x), judge(0.3 * x), atol=1e-5)


def test_gaussian_blur_keeps_the_ink_and_spreads_it_by_sigma():
    from mvae.judges import gaussian_blur

    dots = torch.zeros(3, 28, 28)
    dots[:, 14, 14] = 1.0
    out = gaussian_blur(dots, torch.tensor([0.5, 1.0, 2.0]))
    assert torch.allclose(out.sum(dim=(1, 2)), torch.ones(3), atol=1e-4)
    peaks = out.amax(dim=(1, 2))
    assert peaks[0] > peaks[1] > peaks[2]
    # a separable Gaussian's peak is 1 / (2 pi sigma^2) once sigma spans a few pixels
    assert abs(peaks[2] - 1 / (2 * np.pi * 4.0)) < 0.005
