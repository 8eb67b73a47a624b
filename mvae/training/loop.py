"""The training loop: epochs of fresh label pairs, evaluation on the test split, atomic checkpoints,
exact resume, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import errno
import json
import math
import numbers
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint
from ..config import ModelConfig, TrainConfig, to_dict
from ..data.banks import load_banks
from ..data.cache import BankCache
from ..data.paired import PairedDataset, clean_key
from ..errors import CheckpointError
from ..evaluation.metrics import evaluate_pairs, unimodal_accuracy
from ..model.model import MVAE
from ..model.objectives import beta_at, mvae_objective
from ..signals.audio import AudioFrontEnd
from .checks import state_settings_problem
from .preflight import describe_device, pick_device

SAVE_FAILURES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                 errno.EROFS: "the file system is read-only", errno.EACCES: "permission is denied",
                 errno.EPERM: "permission is denied"}


class Interrupted(Exception):
    """Training stopped on a signal after saving a resumable state."""


def _count(value, low=0, high=None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def _seconds(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def optimiser_settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimiser's settings bar the learning rate, which the schedule sets at every step, in JSON's
    types so that a saved tuple and a list compare equal."""
    return [json.loads(json.dumps({k: v for k, v in group.items() if k not in ("params", "lr")}, default=repr))
            for group in optimizer.param_groups]


def settings_differences(saved: list[dict], fresh: list[dict]) -> str:
    if len(saved) != len(fresh):
        return f"{len(saved)} parameter groups instead of {len(fresh)}"
    return "; ".join(f"{key} {a.get(key)!r} where these flags give {b.get(key)!r}"
                     for a, b in zip(saved, fresh) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key))


def check_position(meta: dict, steps_per_epoch: int) -> str | None:
    """What is wrong with a training state's position and running totals, in words, or None.

    The loop trusts these values (it sums the history's seconds, pops the partial count), so a damaged
    or edited state must be refused here rather than fail an epoch later.
    """
    if not isinstance(meta, dict):
        return "its metadata is not a mapping"
    epoch, batch, history = meta.get("epoch"), meta.get("batch"), meta.get("history")
    partial, wall = meta.get("partial", {}), meta.get("wall_seconds", 0.0)
    if not _count(epoch):
        return f"its epoch is {epoch!r}, not a count"
    if not _count(batch, 0, steps_per_epoch):
        return (f"its batch is {batch!r}, not a count from 0 to {steps_per_epoch} "
                "(the batches of an epoch with these flags)")
    if not isinstance(history, list) or len(history) != epoch:
        return f"its history should list the {epoch} finished epoch(s)"
    for i, entry in enumerate(history):
        if not (isinstance(entry, dict) and entry.get("epoch") == i + 1 and _seconds(entry.get("seconds"))
                and isinstance(entry.get("train"), dict) and isinstance(entry.get("test"), dict)):
            return f"entry {i + 1} of its history is malformed"
    if not isinstance(partial, dict) or not all(isinstance(k, str) and isinstance(v, numbers.Real)
                                                and not isinstance(v, bool) and math.isfinite(v)
                                                for k, v in partial.items()):
        return "its running totals of the epoch are not finite numbers"
    if (partial.get("n", 0) if partial else 0) != batch:
        return f"its running totals count {partial.get('n', 0)} batch(es) but its position is batch {batch}"
    if not _seconds(wall):
        return f"its wall-clock is {wall!r}"
    return None


@dataclass
class TrainingData:
    train: PairedDataset
    test: PairedDataset


def load_training_data(data_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, progress=True,
                       limit: int | None = None, cache: BankCache | None = None) -> TrainingData:
    """The train and test banks. With a `cache` (train.py passes one) each phase is announced in a line,
    the slow banks are kept for the next run (mvae.data.cache), and no bank makes more augmented copies than
    the run's pairs can draw (mvae.data.banks.useful_copies)."""
    front_end = AudioFrontEnd(model_cfg.audio)
    if cache is not None:
        cache.say(f"loading data from {data_dir}: {', '.join(model_cfg.modalities)}")
        cache = replace(cache, draws=train_cfg.pairs_per_epoch * train_cfg.epochs)
    kwargs = dict(front_end=front_end, modalities=model_cfg.modalities, aug_copies=train_cfg.speech_aug_copies,
                  aug_strength=train_cfg.aug_strength, seed=train_cfg.seed, progress=progress, limit=limit,
                  cache=cache)
    train = load_banks(data_dir, "train", **kwargs, warped_targets=train_cfg.warped_targets)
    test = load_banks(data_dir, "test", **kwargs)
    return TrainingData(PairedDataset(train, train_cfg.seed, train_cfg.clean_targets),
                        PairedDataset(test, train_cfg.seed))


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
        for name, bank in data.train.banks.items():
            self.model.norm(name).fit(bank.items)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(train_cfg.seed)
        self.epoch, self.batch_start, self.history, self.partial = 0, 0, [], {}
        self.steps_per_epoch = -(-train_cfg.pairs_per_epoch // train_cfg.batch_size)
        self.saved_at: tuple[int, int] | None = None  # (epoch, batch) of the last state this run saved or resumed

    def resume(self) -> bool:
        """Continues from the state in out_dir; False when there is none. A damaged or altered state is a
        CheckpointError that names the file."""
        path = self.out_dir / checkpoint.STATE_FILE
        if not path.is_file():
            return False
        altered = f"The training state {path} is damaged or was altered"
        advice = "Train into a new --out, or delete the file to start this run over."
        settings = optimiser_settings(self.optimizer)
        try:
            meta = checkpoint.load_training_state(self.out_dir, self.model, self.optimizer, self.generator)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{altered} ({type(exc).__name__}: {exc}). {advice}") from exc
        saved = optimiser_settings(self.optimizer)
        if saved != settings:
            raise CheckpointError(f"{altered}, or was made with other flags: its optimiser has "
                                  f"{settings_differences(saved, settings)}. Resume with the flags of that run. "
                                  f"{advice}")
        problem = state_settings_problem(meta, self.cfg) or check_position(meta, self.steps_per_epoch)
        if problem:
            raise CheckpointError(f"{altered}: {problem}. {advice}")
        self.epoch, self.batch_start = meta["epoch"], meta["batch"]
        self.history, self.partial = meta["history"], dict(meta.get("partial", {}))
        self.wall_before = float(meta.get("wall_seconds", 0.0))
        self.saved_at = (self.epoch, self.batch_start)
        return True

    def wall_seconds(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    @contextmanager
    def _writing(self):
        """Turns a failed write (a full disk above all) into a CheckpointError that says what is kept."""
        try:
            yield
        except OSError as exc:
            reason = SAVE_FAILURES.get(exc.errno) or exc.strerror or str(exc)
            if self.saved_at is None:
                kept = "Nothing of this run had been saved yet: once there is room, start it again."
            else:
                epoch, batch = self.saved_at
                where = f"after epoch {epoch}" if batch == 0 else f"in epoch {epoch + 1} at batch {batch}"
                kept = (f"The state saved {where} is intact: once there is room, continue from it with "
                        f"--resume --out {self.out_dir} and the same flags.")
            raise CheckpointError(f"Could not save the checkpoint in {self.out_dir}: {reason}. {kept}") from exc

    def _save_state(self):
        with self._writing():
            checkpoint.save_training_state(self.out_dir, self.model, self.optimizer, self.generator, {
                "epoch": self.epoch, "batch": self.batch_start, "history": self.history, "partial": self.partial,
                "train_config": to_dict(self.cfg), "wall_seconds": self.wall_seconds(),
            })
        self.saved_at = (self.epoch, self.batch_start)

    def _step(self, batch: dict, step: int) -> dict:
        self.model.train()
        for name, modality in self.model.modalities.items():
            if name in batch:
                batch[name] = modality.augment(batch[name], self.cfg.image_aug, self.generator)
        beta = beta_at(step, self.steps_per_epoch, self.cfg.beta, self.cfg.beta_warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, step, self.steps_per_epoch)
        targets = {name: batch.pop(clean_key(name)) for name in self.model.modalities if clean_key(name) in batch}
        out = mvae_objective(self.model, batch, beta, generator=self.generator, targets=targets)
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
        # Minutes on a CPU with the whole test split: said before it starts, with or without progress bars.
        fewer = "" if self.cfg.eval_pairs else "; --eval-pairs evaluates on fewer"
        tqdm.write(f"epoch {self.epoch + 1}: evaluating on {len(pairs):,} test pairs{fewer}")
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
                # The test split is only watched here (the evaluator judges the result), so a recipe may
                # look less often; an epoch it skips keeps an empty record.
                evaluated = (self.epoch + 1) % self.cfg.eval_every == 0 or self.epoch + 1 == self.cfg.epochs
                metrics = self.evaluate() if evaluated else {}
                self.history.append({"epoch": self.epoch + 1, "train": train_means, "test": metrics,
                                     "seconds": seconds})
                self.epoch, self.batch_start, self.partial = self.epoch + 1, 0, {}
                tqdm.write(f"epoch {self.epoch}: writing the checkpoint to {self.out_dir}")
                self.save()
                if metrics:
                    acc = metrics["unimodal_accuracy"]
                    tqdm.write(f"epoch {self.epoch}: test elbo {metrics['elbo']:.1f} "
                               + " ".join(f"acc[{k}]={v:.4f}" for k, v in acc.items()) + f" ({seconds:.0f}s)")
                else:
                    tqdm.write(f"epoch {self.epoch}: train loss {train_means['loss']:.1f} "
                               f"accuracy {train_means['accuracy']:.4f}, not evaluated ({seconds:.0f}s)")
                if self.on_epoch and metrics:
                    self.on_epoch(self.epoch, metrics)
        return self.latest_metrics()

    def latest_metrics(self) -> dict:
        """The test metrics of the last evaluated epoch ({} before the first)."""
        return next((h["test"] for h in reversed(self.history) if h["test"]), {})

    def save(self):
        info = {"metrics": self.latest_metrics(), "history": self.history,
                "train_config": to_dict(self.cfg), "device": describe_device(self.device), **self.run_info,
                "train_seconds": sum(h["seconds"] for h in self.history), "wall_seconds": self.wall_seconds()}
        # The model first and the state last: after a failed write, --resume repeats the epoch in full.
        with self._writing():
            checkpoint.save_model(self.out_dir, self.model, info, dtype=self.save_dtype)
        self._save_state()
