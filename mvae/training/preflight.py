"""What a training run checks before it starts that needs torch: that the device it is asked for is there, and
that the model its settings describe is one mvae.load reads. (mvae.training.checks holds the checks that
need no torch.)"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import checkpoint
from ..config import ModelConfig
from ..errors import CheckpointError, InputError
from ..store import MAX_PARAMETERS
from ..store_checks import misfit


def _loader_reason(exc: CheckpointError, name: Path) -> str:
    """The reason in a refusal of the checkpoint loader, without the words about a file: the same check
    here refuses settings, not a file."""
    prefix, _, suffix = str(misfit(name, "\0")).partition("\0")
    text = str(exc)
    return text[len(prefix):len(text) - len(suffix)] if text.startswith(prefix) and text.endswith(suffix) else text


def model_size_problem(model_cfg: ModelConfig) -> str | None:
    """Whether the model these settings describe is one mvae.load reads, in words when it is not: the checks
    it makes on a file, made on the settings. Costs milliseconds: the model is sized from its shapes on the
    meta device, not built."""
    model = checkpoint.shape_model(model_cfg)
    n = sum(t.numel() for t in model.state_dict().values())
    if n > MAX_PARAMETERS:
        return (f"these settings make a model of {n:,} parameters, more than the {MAX_PARAMETERS:,} mvae.load reads; "
                "choose a smaller --hidden, --latent-dim, --style-dim or --conv-channels")
    name = Path("(these settings)")
    try:
        checkpoint.check_bounds(model_cfg, name)
    except CheckpointError as exc:
        return (f"these settings make a model that mvae.load would refuse: {_loader_reason(exc, name)}; choose a "
                "smaller --hidden, --latent-dim, --style-dim or --conv-channels")
    return None


def check_device(name: str | None) -> torch.device:
    """The torch device --device names, when this machine has it; InputError otherwise, before any work."""
    try:
        device = pick_device(name)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"--device {name!r} is not a torch device ({exc}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not (torch.cuda.is_available()
                                      and (device.index or 0) < torch.cuda.device_count()):
        raise InputError(f"--device {name} is not available on this machine "
                         f"({torch.cuda.device_count()} CUDA device(s)); leave out --device to train on "
                         f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name!r} is not one this trainer supports; use cpu or cuda")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps is not available on this machine; leave out --device to train on cpu")
    return device


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def describe_device(device: torch.device) -> str:
    """The device in words for a run's record, so a training time says what it was measured on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({os.cpu_count()} logical CPUs, {threads} torch thread{'s' * (threads != 1)})"
