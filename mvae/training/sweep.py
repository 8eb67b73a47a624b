"""Hyperparameter study with Optuna: short training runs scored on held-out training data.

    python -m mvae.training.sweep --data-dir data --trials 20
    python -m mvae.training.sweep --storage postgresql://user:pass@host/db --study-name shared   # on many machines

The test splits are never seen: a modality whose source names "fit" and "val" splits (the spoken digits: recordings
5-9 of each speaker and digit are held out) trains on the one and is scored on the other; any other holds out one
training item in ten, at random. Results go to checkpoints/sweep/results.json for the app.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna

from .. import registry
from ..config import LABEL, N_CLASSES, ModelConfig, TrainConfig
from ..data.banks import load_banks
from ..data.paired import Bank, PairedDataset
from ..data.sources import resolve_data_dir
from ..errors import run_cli
from ..folders import CHECKPOINTS, SWEEP_FOLDER, SWEEP_RESULTS
from ..signals.audio import AudioFrontEnd
from ..store import atomic_write_json
from .loop import Trainer, TrainingData

DEFAULT_OUT = Path(CHECKPOINTS) / SWEEP_FOLDER  # where the app looks for the results (mvae.folders)
VALIDATION_EVERY = 10  # one training item in ten, drawn at random, is held out
HELD_OUT_SPLITS = ("fit", "val")  # a source's own split of its training part: (trained on, scored on)


def _hold_out(bank: Bank, rng: np.random.Generator) -> tuple[Bank, Bank]:
    """(the bank less a tenth of each class, that tenth)."""
    held = np.zeros(len(bank.labels), bool)
    # At random within each class: every tenth row of a set stored in label order would be one class.
    for c in range(N_CLASSES):
        rows = rng.permutation(np.flatnonzero(bank.labels == c))
        held[rows[: max(1, len(rows) // VALIDATION_EVERY)]] = True
    return Bank(bank.items[~held], bank.labels[~held]), Bank(bank.items[held], bank.labels[held])


def validation_data(data_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, progress=False) -> TrainingData:
    fit, val = {}, {}
    rng = np.random.default_rng([train_cfg.seed, 11])
    front_end = AudioFrontEnd(model_cfg.audio)
    for name in model_cfg.modalities:
        if set(HELD_OUT_SPLITS) <= set(registry.modality(name).source.splits):
            # Augmented copies (of the fit split only, as load_banks makes them) never reach the scored split.
            fit.update(load_banks(data_dir, "fit", front_end, (name,), train_cfg.speech_aug_copies,
                                  train_cfg.aug_strength, train_cfg.seed, progress))
            val.update(load_banks(data_dir, "val", front_end, (name,), progress=False))
        else:
            # Without copies: a copy of a held-out item left in the training part would leak it.
            (bank,) = load_banks(data_dir, "train", front_end, (name,), progress=False).values()
            fit[name], val[name] = _hold_out(bank, rng)
    return TrainingData(PairedDataset(fit, train_cfg.seed), PairedDataset(val, train_cfg.seed))


def weighted_modalities(model_cfg: ModelConfig) -> tuple[str, ...]:
    """The modalities whose reconstruction weight the study tunes (the images keep theirs): the recorded
    ones. Each one's parameter is "<name>_weight", so the shipped study's "speech_weight" keeps its name."""
    return tuple(n for n in model_cfg.modalities if n in registry.names(registry.SPEECH))


def suggest(trial: optuna.Trial, model_cfg: ModelConfig, train_cfg: TrainConfig):
    model_cfg = replace(
        model_cfg,
        latent_dim=trial.suggest_categorical("latent_dim", [32, 64, 96]),
        hidden=trial.suggest_categorical("hidden", [128, 256, 384]),
        label_weight=trial.suggest_float("label_weight", 10.0, 200.0, log=True),
        recon_weights={**model_cfg.recon_weights, **{name: trial.suggest_float(f"{name}_weight", 0.3, 3.0, log=True)
                                                     for name in weighted_modalities(model_cfg)}},
    )
    train_cfg = replace(
        train_cfg,
        beta=trial.suggest_float("beta", 0.25, 2.0, log=True),
        beta_warmup_epochs=trial.suggest_float("beta_warmup_epochs", 0.0, 2.0),
        lr=trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        aug_strength=trial.suggest_float("aug_strength", 0.0, 1.5),
        image_aug=trial.suggest_float("image_aug", 0.0, 1.5),
    )
    return model_cfg, train_cfg


def score(metrics: dict) -> float:
    """Mean label accuracy over the seven input subsets on the validation pairs."""
    return float(np.mean([v for k, v in metrics["accuracy"].items() if k != LABEL]))


def objective_for(data_dir, base_model: ModelConfig, base_train: TrainConfig, work_dir: Path, data_cache: dict):
    def objective(trial: optuna.Trial) -> float:
        model_cfg, train_cfg = suggest(trial, base_model, base_train)
        key = train_cfg.aug_strength > 0
        if key not in data_cache:  # speech augmentation is baked into the bank; reuse it across trials
            data_cache[key] = validation_data(data_dir, model_cfg, train_cfg)
        def report(epoch, metrics):
            trial.report(score(metrics), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial_dir = work_dir / f"trial-{trial.number}"
        try:
            return score(Trainer(model_cfg, train_cfg, data_cache[key], trial_dir, progress=False,
                                 on_epoch=report).fit())
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)  # a trial's weights are not worth 14 MB each
    return objective


def study_results(study: optuna.Study, top: int = 5) -> dict:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = sorted(complete, key=lambda t: t.value, reverse=True)[:top]
    importance = {}
    if len(complete) >= 2:
        try:
            importance = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # too few distinct values to attribute variance
            importance = {}
    return {
        "study": study.study_name,
        "metric": "mean validation label accuracy over the 7 input subsets",
        "best_trials": [{"number": t.number, "value": t.value, "params": t.params} for t in best],
        "importance": {k: float(v) for k, v in importance.items()},
        "trials": [{"number": t.number, "value": t.value, "params": t.params, "state": t.state.name}
                   for t in study.trials],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL; default sqlite:///<out>/study.db. Give one RDB URL (PostgreSQL, "
                        "MySQL) to several machines and they share the study")
    p.add_argument("--study-name", default="mvae", help="name of the study inside the storage")
    p.add_argument("--trials", type=int, default=20, help="trials this process runs")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    p.add_argument("--pairs-per-epoch", type=int, default=20_000, help="pairs per epoch in a trial")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for results.json (and the default SQLite file)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's training")
    p.add_argument("--eval-pairs", type=int, default=5000, help="validation pairs scored per epoch")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{out / 'study.db'}"
    study = optuna.create_study(study_name=args.study_name, storage=storage, direction="maximize",
                                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    base_train = TrainConfig(epochs=args.epochs, pairs_per_epoch=args.pairs_per_epoch, seed=args.seed,
                             eval_pairs=args.eval_pairs, speech_aug_copies=2)

    def body():
        study.optimize(objective_for(resolve_data_dir(args.data_dir), ModelConfig(), base_train, out / "trials", {}),
                       n_trials=args.trials, timeout=args.timeout)
        results = study_results(study)
        atomic_write_json(out / SWEEP_RESULTS, results)
        print(f"best: {results['best_trials'][:1]}\nimportance: {results['importance']}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
