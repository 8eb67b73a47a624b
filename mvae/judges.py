"""Independent unimodal classifiers that score what the MVAE generates (cross-modal coherence).

They never share weights or statistics with the MVAE, and they are trained on real data only. A missing
modality generated from one PoE latent is close to the average of its class (a soft, faint digit; a
smooth spectrogram), so each judge also learns from averages of a few same-class training examples; the
image judges also learn from blurred digits and scale every input to a peak of 1. The speech judge also hears the Griffin-Lim
resyntheses of its training log-mels, because that is how a generated digit reaches the ear.

    python -m mvae.judges --data-dir data --out checkpoints/judges
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint
from .audio import AudioFrontEnd
from .config import AudioConfig, IMAGE_MODALITIES, N_CLASSES
from .data.banks import image_bank, speech_bank
from .data.paired import Bank
from .data.sources import resolve_data_dir
from .errors import CheckpointError, DataError
from .model import Standardise
from .training import augment_images

JUDGE_FILE = "judges.safetensors"
JUDGE_WIDTH = 32
MAX_AVERAGED = 8  # a soft training example averages 2 to this many items of one class
BLUR_SIGMA = (0.5, 2.0)  # pixels: the range of the Gaussian blur given to some image judges' examples
BLUR_RADIUS = 4
DEFAULT_JUDGES = Path(__file__).resolve().parent.parent / "checkpoints" / "judges"


class PeakNormalise(nn.Module):
    """Scales each image so that its brightest pixel is 1: the judge reads the shape, not the ink's strength."""

    def forward(self, x):
        return x / x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-3)


class Judge(nn.Module):
    """A small CNN for one modality; inputs are (B, H, W) in the modality's data space.

    A log-mel judge (n_bins given) first averages 2x2 cells: 64x64 spectrograms would otherwise cost
    five times a digit per example.
    """

    def __init__(self, n_bins: int | None = None, width: int = JUDGE_WIDTH):
        super().__init__()
        self.norm = Standardise(n_bins) if n_bins else PeakNormalise()
        self.pool = nn.AvgPool2d(2) if n_bins else nn.Identity()
        blocks = []
        for c_in, c_out in [(1, width), (width, 2 * width), (2 * width, 4 * width)]:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.SiLU(), nn.MaxPool2d(2)]
        self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                 nn.Linear(4 * width, N_CLASSES))

    def forward(self, x):
        return self.net(self.pool(self.norm(x).unsqueeze(1)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        self.eval()
        return torch.cat([self(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])


def accuracy(judge: Judge, bank: Bank) -> float:
    return float((judge.predict(bank.items) == torch.as_tensor(bank.labels)).float().mean())


def class_averages(bank: Bank, labels: torch.Tensor, generator: torch.Generator, max_k: int = MAX_AVERAGED):
    """For each label, the mean of 2 to max_k random items of that class from the bank."""
    bank_labels = torch.as_tensor(bank.labels)
    picks = torch.empty(len(labels), max_k, dtype=torch.long)
    for c in range(N_CLASSES):
        where = torch.nonzero(labels == c).squeeze(1)
        group = torch.nonzero(bank_labels == c).squeeze(1)
        picks[where] = group[torch.randint(len(group), (len(where), max_k), generator=generator)]
    k = torch.randint(2, max_k + 1, (len(labels),), generator=generator)
    mask = (torch.arange(max_k) < k[:, None]).to(bank.items.dtype)
    mask = mask.view(*mask.shape, *[1] * (bank.items.dim() - 1))
    return (bank.items[picks] * mask).sum(1) / k.view(-1, *[1] * (bank.items.dim() - 1))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blurs each image (N, H, W) with its own sigma (N,), separably."""
    offsets = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=images.dtype)
    kernels = torch.exp(-offsets**2 / (2 * sigma[:, None] ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    n, size = len(images), 2 * BLUR_RADIUS + 1
    x = images.unsqueeze(0)  # one channel per image, so that groups=n gives every image its own kernel
    x = F.conv2d(x, kernels.view(n, 1, 1, size), padding=(0, BLUR_RADIUS), groups=n)
    x = F.conv2d(x, kernels.view(n, 1, size, 1), padding=(BLUR_RADIUS, 0), groups=n)
    return x.squeeze(0)


def fit(judge: Judge, bank: Bank, epochs: int, seed: int, augment: float, soft_fraction: float, progress: bool,
        blur_fraction: float = 0.0, batch_size: int = 128):
    """Adam with a one-cycle schedule; `soft_fraction` of each batch is replaced by class averages, and
    `blur_fraction` of it is blurred, as a decoder's smooth output is."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    steps = epochs * -(-len(bank.labels) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    labels = torch.as_tensor(bank.labels)
    bar = tqdm(total=steps, desc="judge", disable=not progress, leave=False)
    for _ in range(epochs):
        judge.train()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            x = bank.items[rows]
            if soft_fraction > 0:
                soft = torch.rand(len(rows), generator=generator) < soft_fraction
                x[soft] = class_averages(bank, labels[rows][soft], generator)
            if augment > 0:
                x = augment_images(x, augment, generator)
            if blur_fraction > 0:
                blurred = torch.rand(len(rows), generator=generator) < blur_fraction
                low, high = BLUR_SIGMA
                sigma = low + (high - low) * torch.rand(int(blurred.sum()), generator=generator)
                x[blurred] = gaussian_blur(x[blurred], sigma)
            loss = F.cross_entropy(judge(x), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
    bar.close()
    return judge.eval()


def resynthesised(bank: Bank, front_end: AudioFrontEnd, batch_size: int = 256) -> Bank:
    """Each log-mel -> Griffin-Lim waveform -> the front end again, as generated speech is heard."""
    mels = []
    for start in range(0, len(bank.labels), batch_size):
        waves = front_end.waveform_from_log_mel(bank.items[start:start + batch_size])
        mels.append(front_end.log_mel(np.stack([front_end.fix_length(front_end.normalise(w)) for w in waves])))
    return Bank(torch.cat(mels), bank.labels)


def soft_bank(bank: Bank, seed: int) -> Bank:
    """One class average per item of the bank, with the item's label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(bank.labels)
    return Bank(class_averages(bank, labels, generator), bank.labels)


def train_judges(data_dir, audio_cfg: AudioConfig, epochs: int = 4, speech_epochs: int = 12, seed: int = 0,
                 progress: bool = True, only=None, judges=None, report=None, image_aug: float = 1.0,
                 soft_fraction: float = 0.3, blur_fraction: float = 0.3):
    """Trains the judges named in `only` (default: all), keeping the others from `judges`/`report`.

    Each report gives the accuracy on the real test split, on class averages of it and (images) on it
    blurred by the widest blur of training: what a judge must read in generated data.
    """
    torch.manual_seed(seed)
    front_end = AudioFrontEnd(audio_cfg)
    judges, report = dict(judges or {}), dict(report or {})
    only = set(only or (*IMAGE_MODALITIES, "speech"))
    for name in IMAGE_MODALITIES:
        if name not in only:
            continue
        train, test = image_bank(data_dir, name, "train"), image_bank(data_dir, name, "test")
        judges[name] = fit(Judge(), train, epochs, seed, image_aug, soft_fraction, progress, blur_fraction)
        blurred = gaussian_blur(test.items, torch.full((len(test.labels),), max(BLUR_SIGMA)))
        report[name] = {"test_accuracy": accuracy(judges[name], test),
                        "class_average_test_accuracy": accuracy(judges[name], soft_bank(test, seed)),
                        "blurred_test_accuracy": accuracy(judges[name], Bank(blurred, test.labels))}
    if "speech" not in only:
        return judges, report
    train = speech_bank(data_dir, "train", front_end, aug_copies=1, seed=seed, progress=progress)
    soft = soft_bank(train, seed)
    parts = [train, resynthesised(train, front_end), soft, resynthesised(soft, front_end)]
    everything = Bank(torch.cat([p.items for p in parts]), np.concatenate([p.labels for p in parts]))
    judge = Judge(audio_cfg.n_mels)
    judge.norm.set_stats(train.items.mean(dim=(0, 2)), train.items.std(dim=(0, 2)))
    judges["speech"] = fit(judge, everything, speech_epochs, seed, 0.0, 0.0, progress)
    test = speech_bank(data_dir, "test", front_end, progress=False)
    report["speech"] = {
        "test_accuracy": accuracy(judges["speech"], test),
        "griffin_lim_test_accuracy": accuracy(judges["speech"], resynthesised(test, front_end)),
        "class_average_test_accuracy": accuracy(judges["speech"], resynthesised(soft_bank(test, seed), front_end)),
    }
    return judges, report


class _Judges(nn.Module):
    def __init__(self, judges: dict[str, Judge]):
        super().__init__()
        self.judges = nn.ModuleDict(judges)


def save_judges(folder, judges: dict[str, Judge], report: dict, audio_cfg: AudioConfig) -> Path:
    folder = Path(folder)
    tensors = {k: v for k, v in _Judges(judges).state_dict().items()}
    meta = {"kind": "judges", "n_mels": audio_cfg.n_mels, "width": JUDGE_WIDTH, "report": report}
    checkpoint.atomic_write(folder / JUDGE_FILE, checkpoint.pack(tensors, meta))
    checkpoint.atomic_write_json(folder / "judges.json", meta)
    return folder / JUDGE_FILE


def load_judges(folder=None) -> tuple[dict[str, Judge], dict]:
    path = Path(folder or DEFAULT_JUDGES) / JUDGE_FILE
    tensors, meta = checkpoint.unpack(path)
    width = meta.get("width", 16)
    holder = _Judges({n: Judge(meta["n_mels"] if n == "speech" else None, width) for n in (*IMAGE_MODALITIES, "speech")})
    try:
        holder.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this version of the judges: {exc}") from exc
    return {n: j.eval() for n, j in holder.judges.items()}, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--out", default=str(DEFAULT_JUDGES), help="folder for judges.safetensors and judges.json")
    p.add_argument("--epochs", type=int, default=4, help="passes over each image training set")
    p.add_argument("--speech-epochs", type=int, default=12, help="passes over the speech training set")
    p.add_argument("--only", nargs="+", choices=[*IMAGE_MODALITIES, "speech"],
                   help="retrain only these judges and keep the others from --out")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)
    try:
        kept, meta = load_judges(args.out) if args.only else ({}, {"report": {}})
        judges, report = train_judges(resolve_data_dir(args.data_dir), AudioConfig(), args.epochs, args.speech_epochs,
                                      args.seed, not args.no_progress, args.only, kept, meta["report"])
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_judges(args.out, judges, report, AudioConfig())
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
