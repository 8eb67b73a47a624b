import json

import optuna
import pytest

from mvae.training import sweep


@pytest.mark.slow
def test_a_small_study_writes_results_and_can_be_resumed(synthetic_data, tmp_path):
    args = ["--data-dir", str(synthetic_data), "--trials", "2", "--epochs", "1", "--pairs-per-epoch", "200",
            "--eval-pairs", "100", "--out", str(tmp_path)]
    assert sweep.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["trials"]) == 2 and results["best_trials"][0]["value"] >= results["best_trials"][-1]["value"]
    assert {"beta", "latent_dim", "lr", "speech_weight", "aug_strength"} <= set(results["trials"][0]["params"])
    assert all(0.0 <= t["value"] <= 1.0 for t in results["trials"])
    assert not (tmp_path / "trials").exists() or not any((tmp_path / "trials").iterdir())
    # The same storage continues the same study, as machines sharing one RDB URL would.
    assert sweep.main(args[:3] + ["1"] + args[4:]) == 0
    study = optuna.load_study(study_name="mvae", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.trials) == 3


def test_validation_never_touches_the_test_split(synthetic_data):
    from mvae.config import ModelConfig, TrainConfig
    from mvae.data.sources import recordings

    data = sweep.validation_data(synthetic_data, ModelConfig(), TrainConfig(speech_aug_copies=0))
    indices = {split: {r.index for r in recordings(synthetic_data, "speech", split)}
               for split in ("fit", "val", "test")}
    assert indices["val"].isdisjoint(indices["test"]) and indices["fit"].isdisjoint(indices["val"])
    assert indices["fit"].isdisjoint(indices["test"])
    assert len(data.test.banks["speech"].labels) == len(recordings(synthetic_data, "speech", "val"))
    n_train = 300  # synthetic per-class 30 x 10
    assert len(data.test.banks["farsi"].labels) == n_train // sweep.VALIDATION_EVERY
    assert len(data.train.banks["farsi"].labels) + len(data.test.banks["farsi"].labels) == n_train


@pytest.mark.slow
def test_validation_keeps_every_class_when_the_set_is_stored_in_label_order(tmp_path):
    import numpy as np

    from mvae.config import ModelConfig, TrainConfig
    from tests.helpers import make_dataset

    root = make_dataset(tmp_path)
    for script in ("farsi", "kannada"):  # cycle 0..9 like the Kannada-MNIST files
        with np.load(root / script / "train.npz") as f:
            images, labels = f["images"], f["labels"]
        order = np.stack([np.flatnonzero(labels == c) for c in range(10)], axis=1).ravel()
        np.savez_compressed(root / script / "train.npz", images=images[order], labels=labels[order])
    data = sweep.validation_data(root, ModelConfig(), TrainConfig(speech_aug_copies=0))
    for script in ("farsi", "kannada"):
        assert set(data.test.banks[script].labels) == set(range(10))
