"""A short training run must learn: the loss falls and label accuracy rises well above chance (10 %).

The runs use one thread: two threads fighting other jobs for two cores can run many times slower than
one, and a test must hold on a loaded machine.
"""

import json
import shlex
from dataclasses import replace

import numpy as np
import pytest
import torch

import mvae
from mvae.config import ModelConfig, TrainConfig, shipped_configs, to_dict
from mvae.fields import flag_fields
from mvae.training.loop import Trainer, load_training_data

SMALL = ModelConfig(hidden=128, latent_dim=16)
SHORT = TrainConfig(epochs=5, batch_size=64, pairs_per_epoch=3000, lr=2e-3, speech_aug_copies=1, beta_warmup_epochs=1,
                    eval_pairs=600, image_aug=0.0)
# A slice of the real data: 1,500 items of each bank and no speech augmentation, about 300 steps in all.
# It reaches about 85 % on every modality (chance is 10 %) at a fraction of a full run's cost.
REAL_SLICE = 1500
REAL = replace(SHORT, epochs=6, speech_aug_copies=0, eval_pairs=300)


@pytest.fixture(autouse=True)
def one_thread():
    """From data loading on: log-mels computed on another number of threads differ in the last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(data_dir, out_dir, limit=None, train_cfg=SHORT):
    data = load_training_data(data_dir, SMALL, train_cfg, progress=False, limit=limit)
    trainer = Trainer(SMALL, train_cfg, data, out_dir, device="cpu", progress=False)
    trainer.fit()
    return trainer


def check_learns(trainer, min_accuracy):
    history = trainer.history
    assert history[-1]["train"]["loss"] < 0.8 * history[0]["train"]["loss"]
    test = history[-1]["test"]
    for name, accuracy in test["unimodal_accuracy"].items():
        assert accuracy > min_accuracy, (name, accuracy)
    assert test["accuracy"]["farsi+kannada+speech"] > min_accuracy
    for name, recon in test["recon"].items():
        assert recon["given"] < recon["missing"], name  # seeing a modality helps reconstruct it


@pytest.mark.slow
def test_learns_on_synthetic_data(synthetic_data, tmp_path):
    trainer = run(synthetic_data, tmp_path)
    check_learns(trainer, 0.6)
    pipe = mvae.load(tmp_path)
    assert len(pipe.metadata["info"]["history"]) == SHORT.epochs


@pytest.mark.slow
def test_learns_on_a_slice_of_the_real_data(real_data, tmp_path):
    trainer = run(real_data, tmp_path, limit=REAL_SLICE, train_cfg=REAL)
    check_learns(trainer, 0.5)


class StopAfterFirstEpoch(Exception):
    pass


def stop_after_first_epoch(epoch, metrics):
    raise StopAfterFirstEpoch  # the checkpoint of epoch 1 is already written, as when a run is killed


@pytest.mark.slow
def test_resume_continues_exactly(synthetic_data, tmp_path):
    cfg = replace(SHORT, epochs=2, pairs_per_epoch=600)
    straight = run(synthetic_data, tmp_path / "straight", train_cfg=cfg)

    data = load_training_data(synthetic_data, SMALL, cfg, progress=False)
    first = Trainer(SMALL, cfg, data, tmp_path / "split", progress=False, on_epoch=stop_after_first_epoch)
    with pytest.raises(StopAfterFirstEpoch):
        first.fit()
    second = Trainer(SMALL, cfg, data, tmp_path / "split", progress=False)
    assert second.resume() and second.epoch == 1
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history[-1]["test"] == second.history[-1]["test"]


def test_recorded_command_leaves_out_the_data_location():
    import train

    assert train.recipe(["--data-dir", "/somewhere/data", "--epochs", "3"]) == \
        "python train.py --data-dir DATA_DIR --epochs 3"
    assert train.recipe(["--data-dir=/somewhere/data"]) == "python train.py --data-dir=DATA_DIR"
    assert train.recipe(["--cache-dir", "/somewhere/cache", "--epochs", "3", "--cache-dir=/x", "--no-progress"]) == \
        "python train.py --epochs 3 --no-progress"


def test_help_documents_every_flag_with_its_help_and_the_recipes_default(capsys, monkeypatch):
    import train

    monkeypatch.setenv("COLUMNS", "1000")  # no help text wrapped, nor broken at a hyphen
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--data-dir", "--resume", "--config", "--recon-weights"):
        assert flag in text
    for cfg in shipped_configs():
        for f in flag_fields(type(cfg)):
            flag = f"--{f.name.replace('_', '-')} {f.name.upper()}"
            default = getattr(cfg, f.name)
            if isinstance(default, dict):
                default = ",".join(f"{k}={v:g}" for k, v in default.items())
            assert f"{flag} {f.metadata['help']} (default: {default})" in text, f.name
    assert "--hidden HIDDEN width of the hidden layers (default: 256)" in text
    assert "--save-dtype {float32,float16,bfloat16} precision of the weights" in text
    assert "(float16 halves the size) (default: float16)" in text


# The shipped model's command, as the README gives it: train.py with no flags must train this.
SHIPPED_FLAGS = ("--architecture conv-mlp --conv-channels 16 --image-conv-extra 1 --image-conv-batchnorm true "
                 "--hidden 256 --latent-dim 16 --style-dim 16 --cross-style own --swap-weight 200 --image-decoder conv "
                 "--decoded-subsets 2 --style-kl-weights speech=0.35 --epochs 14 --beta 0.5 --lr-schedule cosine "
                 "--clean-targets true --save-dtype float16 "
                 "--num-threads 2").split()


def test_train_py_with_no_flags_trains_the_shipped_recipe():
    import train

    bare = train.parse_args(["--data-dir", "data"])
    spelled_out = train.parse_args(["--data-dir", "data", *SHIPPED_FLAGS])
    assert train.build_configs(bare) == train.build_configs(spelled_out) == shipped_configs()
    assert bare.save_dtype == spelled_out.save_dtype == "float16"
    model_cfg, train_cfg = train.build_configs(bare)
    assert (model_cfg.architecture, model_cfg.style_dim, model_cfg.image_decoder, model_cfg.decoded_subsets,
            model_cfg.style_kl_weights["speech"], train_cfg.epochs, train_cfg.beta) == \
        ("conv-mlp", 16, "conv", 2, 0.35, 14, 0.5)
    # The dataclass defaults stay the plain model that older checkpoints and the tests are made with.
    assert ModelConfig().architecture == "mlp" and ModelConfig().style_dim == 0 and TrainConfig().epochs == 10


def test_a_mapping_flag_changes_the_pairs_it_names_and_keeps_the_others():
    import train

    model_cfg, _ = train.build_configs(train.parse_args(["--data-dir", "data", "--recon-weights", "speech=2.5"]))
    assert model_cfg.recon_weights == {"farsi": 1.0, "kannada": 1.0, "speech": 2.5}
    model_cfg, _ = train.build_configs(train.parse_args(["--recon-weights", "farsi=0.5,kannada=3"]))
    assert model_cfg.recon_weights == {"farsi": 0.5, "kannada": 3.0, "speech": 1.0}


def test_config_file_goes_over_the_recipe_and_flags_over_the_file(tmp_path):
    import train

    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": {"hidden": 64, "style_dim": 0}, "train": {"epochs": 3, "lr": 0.01}}))
    model_cfg, train_cfg = train.build_configs(train.parse_args(["--config", str(config), "--epochs", "5"]))
    assert (model_cfg.hidden, model_cfg.style_dim, model_cfg.architecture) == (64, 0, "conv-mlp")
    assert (train_cfg.epochs, train_cfg.lr, train_cfg.lr_schedule) == (5, 0.01, "cosine")
    config.write_text(json.dumps({"model": ["not", "an", "object"]}))
    with pytest.raises(ValueError, match="must be an object of ModelConfig fields"):
        train.build_configs(train.parse_args(["--config", str(config)]))


@pytest.mark.parametrize("model_cfg, train_cfg, dtype", [
    (ModelConfig(), TrainConfig(), "float32"),  # the dataclass defaults: every field the recipe sets is named
    (*shipped_configs(), "float16"),  # the recipe itself: nothing to name
    (replace(shipped_configs()[0], hidden=128, recon_weights={"farsi": 1.0, "kannada": 1.0, "speech": 0.5}),
     replace(shipped_configs()[1], seed=3), "bfloat16"),
])
def test_the_benchmarks_rebuilt_command_trains_the_same_configs(model_cfg, train_cfg, dtype):
    import train
    from benchmarks.run import train_command

    meta = {"model_config": to_dict(model_cfg), "dtype": dtype, "info": {"train_config": to_dict(train_cfg)}}
    command = train_command(meta, "runs/x")
    words = shlex.split(command)
    assert words[:4] == ["python", "train.py", "--out", "runs/x"]
    if (model_cfg, train_cfg) == shipped_configs():
        assert len(words) == 4
    args = train.parse_args(words[2:])
    assert train.build_configs(args) == (model_cfg, train_cfg)
    assert args.save_dtype == dtype


def test_cosine_schedule_runs_from_lr_to_its_floor():
    from mvae.training.loop import learning_rate

    cfg = TrainConfig(epochs=4, lr=1e-3, lr_floor=0.1, lr_schedule="cosine")
    rates = [learning_rate(cfg, step, 10) for step in range(41)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[20] == pytest.approx(0.55e-3)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert learning_rate(replace(cfg, lr_schedule="constant"), 30, 10) == 1e-3


def test_drawing_augmentation_varies_the_aspect_ratio_and_keeps_the_ink():
    from mvae.signals.augment import augment_images

    square = torch.zeros(400, 28, 28)
    square[:, 9:19, 9:19] = 1.0
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment_images(square, 0.0, generator), square)
    out = augment_images(square, 1.0, generator)
    ink = out > 0.5
    width = ink.any(dim=1).sum(dim=1).float()
    height = ink.any(dim=2).sum(dim=1).float()
    ratio = width / height
    assert ratio.min() < 0.8 and ratio.max() > 1.25, "the aspect ratio should vary by a quarter or more each way"
    assert (ink.sum(dim=(1, 2)) > 40).all(), "no digit may be pushed out of the frame"


@pytest.mark.slow
def test_eval_every_skips_the_test_split_between_evaluations_and_always_judges_the_last_epoch(synthetic_data,
                                                                                               tmp_path):
    cfg = replace(SHORT, epochs=3, pairs_per_epoch=256, eval_every=2, eval_pairs=128)
    trainer = run(synthetic_data, tmp_path, train_cfg=cfg)
    evaluated = [bool(h["test"]) for h in trainer.history]
    assert evaluated == [False, True, True]  # epoch 2 by the interval, epoch 3 as the last
    info = mvae.load(tmp_path).metadata["info"]
    assert info["metrics"] == trainer.history[-1]["test"]
    assert [bool(h["test"]) for h in info["history"]] == evaluated
    assert info["metrics"]["unimodal_accuracy"].keys() == {"farsi", "kannada", "speech"}


@pytest.mark.parametrize("wall_minutes, tune_minutes, met", [(29.5, None, True), (30.5, None, False),
                                                             (26.0, 3.5, True), (27.0, 3.5, False)])
def test_the_training_benchmark_holds_the_recipe_to_thirty_minutes(tmp_path, monkeypatch, wall_minutes, tune_minutes,
                                                                    met):
    import benchmarks.run as bench
    from mvae.checkpoint import save_model
    from tests.helpers import tiny_model_and_batch

    model, _ = tiny_model_and_batch()
    history = [{"epoch": e, "train": {"loss": 1.0}, "test": {"elbo": -1.0} if e in (4, 8) else {}, "seconds": 170.0}
               for e in range(1, 9)]
    save_model(tmp_path, model, {"history": history, "train_seconds": 1360.0, "wall_seconds": 60 * wall_minutes,
                                 "command": "python train.py --out runs/x", "device": "cpu (2 logical CPUs)",
                                 "train_config": {"epochs": 8}}
               | ({"log_mel_contrast": {"chosen": 1.2, "seconds": 60 * tune_minutes}} if tune_minutes else {}))
    monkeypatch.setenv("MVAE_CHECKPOINT", str(tmp_path))
    row, *cuda = bench.bench_training_time()
    # The CUDA row is read from the speech screen's stored run, whatever this machine has.
    assert [r.name for r in cuda] == [r.name for r in bench.cuda_epoch_row()]
    assert row.met is met and row.target == "≤ 30 min"
    # The whole command: train.py's last step, choosing the log-mel contrast, counts too.
    assert row.result == f"{wall_minutes + (tune_minutes or 0):.1f} min"
    assert "22.7 min of training steps and 2 test evaluation(s)" in row.notes
    assert ("3.5 min choosing the log-mel contrast" in row.notes) is bool(tune_minutes)
    assert "machine: cpu (2 logical CPUs)" in row.notes


def test_clean_targets_reach_the_objective_and_nothing_else(synthetic_data, tmp_path, monkeypatch):
    from mvae.data.paired import clean_key
    from mvae.training import loop

    seen = []

    def spy(model, batch, *args, targets=None, **kwargs):
        seen.append((set(batch), set(targets or {})))
        return objective(model, batch, *args, targets=targets, **kwargs)

    objective = loop.mvae_objective
    monkeypatch.setattr(loop, "mvae_objective", spy)
    cfg = replace(SHORT, epochs=1, pairs_per_epoch=128, clean_targets=True, eval_pairs=64)
    data = load_training_data(synthetic_data, SMALL, cfg, progress=False)
    Trainer(SMALL, cfg, data, tmp_path, device="cpu", progress=False).fit()
    assert seen and all(targets == {"speech"} and clean_key("speech") not in keys for keys, targets in seen)


def test_warped_targets_are_what_training_batches_reconstruct(synthetic_data, tmp_path):
    from mvae.data.paired import clean_key

    cfg = replace(SHORT, epochs=1, pairs_per_epoch=128, clean_targets=True, warped_targets=True, eval_pairs=64)
    data = load_training_data(synthetic_data, SMALL, cfg, progress=False)
    bank = data.train.banks["speech"]
    assert bank.targets is not None and data.test.banks["speech"].targets is None
    seen, batch = [], data.train.batch

    def recorded(pairs, rows, *args, **kwargs):
        out = batch(pairs, rows, *args, **kwargs)
        seen.append((out[clean_key("speech")], pairs.index["speech"][rows]))
        return out

    data.train.batch = recorded
    Trainer(SMALL, cfg, data, tmp_path, device="cpu", progress=False).fit()
    assert seen
    for targets, rows in seen:
        assert torch.equal(targets, bank.targets[rows])
    rows = np.concatenate([r for _, r in seen])
    copies = bank.clean[rows] != rows
    assert 0 < copies.mean() < 1 and not torch.equal(bank.targets[rows[copies]], bank.items[rows[copies]])


def test_warped_targets_need_clean_targets():
    from mvae.config import train_config_from_dict

    with pytest.raises(ValueError, match="warped_targets .* needs clean_targets true"):
        train_config_from_dict({"warped_targets": True})
    assert train_config_from_dict({"warped_targets": True, "clean_targets": True}).warped_targets
