"""Checks of a training run's settings and of a training state to resume that need no torch, so that train.py
refuses a run before it pays for torch's import, let alone the data's loading."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from ..config import N_CLASSES, ModelConfig, TrainConfig, train_config_from_dict
from ..errors import CheckpointError
from ..store import STATE_FILE, unpack


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def settings_problem(model_cfg: ModelConfig, train_cfg: TrainConfig) -> str | None:
    """What keeps configs that are each valid from making a run worth starting, in words, or None. The size
    of the model they describe is for `preflight.model_size_problem` to judge, which needs torch."""
    if train_cfg.lr == 0:
        return "lr is 0: the weights would never change, so the run would train nothing; give a learning rate above 0"
    if model_cfg.n_classes != N_CLASSES:
        return (f"n_classes is {model_cfg.n_classes}, but the prepared datasets label the {N_CLASSES} digits "
                f"0-{N_CLASSES - 1}; leave n_classes out of --config")
    return None


def state_settings_problem(meta, train_cfg: TrainConfig) -> str | None:
    """What is wrong with the settings a training state carries, in words, or None: its run's config and
    its optimiser's settings get the ranges the flags get, through the same checks. The digest of a state
    is no signature, so a resealed file could carry any number; the schedule overwrites the saved learning
    rate at every step, but nothing out of range is loaded for all that."""
    if not isinstance(meta, dict):
        return "its metadata is not a mapping"
    saved = meta.get("train_config")
    if saved is not None:
        try:
            train_config_from_dict(saved)
        except ValueError as exc:
            return f"the run settings it records are out of range ({exc})"
    groups = meta.get("param_groups")
    names = {f.name for f in fields(TrainConfig)}
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict):
            try:
                replace(train_cfg, **{k: v for k, v in group.items() if k in names}).validate()
            except ValueError as exc:
                return f"its optimiser's settings are out of range ({exc})"
    return None


class _Header(Exception):
    def __init__(self, meta):
        self.meta = meta


def read_state_metadata(out_dir) -> dict:
    """The metadata of the training state in out_dir, read from its header alone (the weights are read, and
    the whole file verified, when the trainer resumes); a CheckpointError names a file that is damaged or
    is not a regular file."""
    def stop(meta):
        raise _Header(meta)

    try:
        unpack(Path(out_dir) / STATE_FILE, stop)
    except _Header as header:
        return header.meta
    raise CheckpointError(f"The training state in {out_dir} could not be read.")  # unpack always calls stop


def resume_problem(meta, train_cfg: TrainConfig) -> str | None:
    """What makes a training state unfit to resume with these settings, in words, or None."""
    problem = state_settings_problem(meta, train_cfg)
    if problem:
        return problem
    epoch, history = meta.get("epoch"), meta.get("history")
    # Only a state whose position agrees with its history is judged finished here; any other is damaged,
    # for the trainer's full check of the file to say.
    if _count(epoch) and isinstance(history, list) and len(history) == epoch and epoch >= train_cfg.epochs:
        return (f"its run has already trained {epoch} epoch(s) and these settings ask for {train_cfg.epochs}, so "
                "resuming would train nothing; give a larger --epochs to train on")
    return None
