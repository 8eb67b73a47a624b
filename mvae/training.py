"""The training loop: epochs of fresh label pairs, evaluation on the test split, atomic checkpoints,
exact resume, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint
from .audio import AudioFrontEnd
from .augment import augment_images  # noqa: F401  (re-exported: callers import it from here)
from .config import IMAGE_MODALITIES, ModelConfig, TrainConfig, to_dict
from .data.banks import load_banks
from .data.paired import Bank, PairedDataset
from .evaluation import evaluate_pairs, unimodal_accuracy
from .model import MVAE, normalise_inputs
from .objectives import beta_at, mvae_objective


class Interrupted(Exception):
    """Training stopped on a signal after saving a resumable state."""


@dataclass
class TrainingData:
    train: PairedDataset
    test: PairedDataset


def load_training_data(data_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, progress=True,
                       limit: int | None = None) -> TrainingData:
    front_end = AudioFrontEnd(model_cfg.audio)
    kwargs = dict(front_end=front_end, modalities=model_cfg.modalities, aug_copies=train_cfg.speech_aug_copies,
                  aug_strength=train_cfg.aug_strength, seed=train_cfg.seed, progress=progress, limit=limit)
    train = load_banks(data_dir, "train", **kwargs)
    test = load_banks(data_dir, "test", **kwargs)
    return TrainingData(PairedDataset(train, train_cfg.seed), PairedDataset(test, train_cfg.seed))


def speech_stats(bank: Bank) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean and std over all frames of the training log-mels."""
    return bank.items.mean(dim=(0, 2)), bank.items.std(dim=(0, 2))


@contextmanager
def stop_on_signals():
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps, so a stop never tears a file."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """A function of the step alone, so a resumed run follows the same schedule without saved state."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; use 'cosine' or 'constant'")
    progress = min(1.0, step / max(1, cfg.epochs * steps_per_epoch))
    return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


class Trainer:
    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: TrainingData, out_dir,
                 device=None, progress: bool = True, run_info: dict | None = None, save_dtype: str = "float32",
                 on_epoch=None, started: float | None = None):
        self.save_dtype = save_dtype
        # Wall-clock of the whole run (data loading and evaluations included), carried across resumes.
        self.started, self.wall_before = started if started is not None else time.monotonic(), 0.0
        self.on_epoch = on_epoch  # called with (epoch, test metrics) after each epoch, e.g. to prune a trial
        self.model_cfg, self.cfg, self.data = model_cfg, train_cfg, data
        self.out_dir = Path(out_dir)
        self.device = pick_device(device)
        self.progress = progress
        self.run_info = run_info or {}
        torch.manual_seed(train_cfg.seed)
        if train_cfg.num_threads:
            torch.set_num_threads(train_cfg.num_threads)
        self.model = MVAE(model_cfg)
        if "speech" in data.train.banks:
            self.model.speech_norm.set_stats(*speech_stats(data.train.banks["speech"]))
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(train_cfg.seed)
        self.epoch, self.batch_start, self.history, self.partial = 0, 0, [], {}
        self.steps_per_epoch = -(-train_cfg.pairs_per_epoch // train_cfg.batch_size)

    def resume(self) -> bool:
        if not (self.out_dir / checkpoint.STATE_FILE).is_file():
            return False
        meta = checkpoint.load_training_state(self.out_dir, self.model, self.optimizer, self.generator)
        self.epoch, self.batch_start = meta["epoch"], meta["batch"]
        self.history, self.partial = meta["history"], meta.get("partial", {})
        self.wall_before = meta.get("wall_seconds", 0.0)
        return True

    def wall_seconds(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def _save_state(self):
        checkpoint.save_training_state(self.out_dir, self.model, self.optimizer, self.generator, {
            "epoch": self.epoch, "batch": self.batch_start, "history": self.history, "partial": self.partial,
            "train_config": to_dict(self.cfg), "wall_seconds": self.wall_seconds(),
        })

    def _step(self, batch: dict, step: int) -> dict:
        self.model.train()
        for name in IMAGE_MODALITIES:
            if name in batch:
                batch[name] = augment_images(batch[name].cpu(), self.cfg.image_aug, self.generator).to(self.device)
        beta = beta_at(step, self.steps_per_epoch, self.cfg.beta, self.cfg.beta_warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, step, self.steps_per_epoch)
        out = mvae_objective(self.model, normalise_inputs(self.model, batch), beta, generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if not math.isfinite(out.loss.item()):
            raise FloatingPointError(f"the loss became {out.loss.item()} at step {step}; lower --lr")
        return {"loss": out.loss.item(), "beta": beta, "accuracy": float(out.correct.mean()),
                "elbo": float(out.elbo[:-1].mean())}

    def evaluate(self) -> dict:
        test = self.data.test
        pairs = test.covering_pairs()
        if self.cfg.eval_pairs:
            pairs.labels = pairs.labels[: self.cfg.eval_pairs]
            pairs.index = {k: v[: self.cfg.eval_pairs] for k, v in pairs.index.items()}
        metrics = evaluate_pairs(self.model, test, pairs, self.cfg.eval_batch_size, self.device,
                                 seed=self.cfg.seed, progress=self.progress)
        metrics["unimodal_accuracy"] = {name: unimodal_accuracy(self.model, name, bank, device=self.device)
                                        for name, bank in test.banks.items()}
        return metrics

    def fit(self) -> dict:
        """Runs the remaining epochs; raises Interrupted after saving state if a signal arrives."""
        with stop_on_signals() as flag:
            while self.epoch < self.cfg.epochs:
                started = time.time() - self.partial.get("seconds", 0.0)
                pairs = self.data.train.epoch_pairs(self.epoch, self.cfg.pairs_per_epoch)
                batches = self.data.train.batches(pairs, self.cfg.batch_size, self.batch_start, self.device)
                bar = tqdm(batches, total=self.steps_per_epoch, initial=self.batch_start,
                           desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", disable=not self.progress)
                for b, batch in bar:
                    logs = self._step(batch, self.epoch * self.steps_per_epoch + b)
                    for key, value in logs.items():
                        self.partial[key] = self.partial.get(key, 0.0) + value
                    self.partial["n"] = self.partial.get("n", 0) + 1
                    bar.set_postfix(loss=f"{logs['loss']:.1f}", acc=f"{logs['accuracy']:.3f}")
                    self.batch_start = b + 1
                    if flag["stop"]:
                        self.partial["seconds"] = time.time() - started
                        self._save_state()
                        raise Interrupted(f"stopped at epoch {self.epoch + 1}, batch {b + 1}; "
                                          f"resume with --resume --out {self.out_dir}")
                n = self.partial.pop("n")
                train_means = {k: v / n for k, v in self.partial.items() if k != "seconds"}
                seconds = time.time() - started
                metrics = self.evaluate()
                self.history.append({"epoch": self.epoch + 1, "train": train_means, "test": metrics,
                                     "seconds": seconds})
                self.epoch, self.batch_start, self.partial = self.epoch + 1, 0, {}
                self.save()
                acc = metrics["unimodal_accuracy"]
                tqdm.write(f"epoch {self.epoch}: test elbo {metrics['elbo']:.1f} "
                           + " ".join(f"acc[{k}]={v:.4f}" for k, v in acc.items()) + f" ({seconds:.0f}s)")
                if self.on_epoch:
                    self.on_epoch(self.epoch, metrics)
        return self.history[-1]["test"] if self.history else {}

    def save(self):
        info = {"metrics": self.history[-1]["test"] if self.history else {}, "history": self.history,
                "train_config": to_dict(self.cfg), **self.run_info,
                "train_seconds": sum(h["seconds"] for h in self.history), "wall_seconds": self.wall_seconds()}
        checkpoint.save_model(self.out_dir, self.model, info, dtype=self.save_dtype)
        self._save_state()
