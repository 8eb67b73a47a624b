"""Independent unimodal classifiers that score what the MVAE generates (coherence, Fréchet distance).

They follow the rule of the multimodal-VAE literature (MoPoE, MMVAE+): a judge learns from the real
training split of its modality only, never from blur, class averages or anything a model made, and never
shares weights or statistics with the MVAE.

- Image judges see real training digits with geometric augmentation (rotation, scale, aspect, slant,
  shift, stroke width; mvae.signals.augment) and scale every input to a peak of 1, so a faint digit reads like a
  bold one.
- The speech judge hears the real training recordings, once as they are and once varied in speed,
  pitch, noise and gain (the signal-level counterpart of geometric augmentation), and also each of those
  after a Griffin-Lim round trip (log-mel -> waveform -> log-mel). Generated speech is judged after
  Griffin-Lim, because that is how it reaches the ear; the round trip is a fixed signal transform of real
  recordings, not a model's output, so the judge still learns from real data only.
- The FSDD-free speech judge (`speech_synthetic`) never heard FSDD: it learns from espeak-ng's English
  voices and variants at many speeds and pitches, in rooms, noise and gains (mvae.evaluation.voices), each
  also after the Griffin-Lim round trip. Every fifth variant is held out, in every English voice, and
  its accuracy there is reported; FSDD's test recordings are only read, to report how well it hears them.

    python -m mvae.evaluation.judges --data-dir data --out checkpoints/judges
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint, registry
from ..config import N_CLASSES, AudioConfig
from ..data.banks import image_bank, recording_bank
from ..data.paired import Bank
from ..data.sources import resolve_data_dir
from ..errors import CheckpointError, run_cli
from ..model.model import Standardise
from ..signals.audio import AudioFrontEnd
from ..signals.augment import augment_images
from . import voices

JUDGE_FILE = "judges.safetensors"
JUDGE_WIDTH = 32
RULE = ("real training data only; geometric augmentation (images), speed/pitch/noise/gain and Griffin-Lim round "
        "trip of real recordings (speech); speech_synthetic: espeak-ng voices only (speed, pitch, room, noise, gain "
        "and Griffin-Lim round trip), never FSDD")
SYNTHETIC = "speech_synthetic"  # the speech judge that never heard FSDD
SYNTHETIC_EPOCHS = 10
SYNTHETIC_RENDITIONS = 1  # of each digit per voice (English voice x variant), each at its own speed and pitch
DEFAULT_JUDGES = Path(__file__).resolve().parents[2] / "checkpoints" / "judges"
judged_modality, judge_title = registry.judged_modality, registry.judge_title


# The registry is read when asked, not at import, so that a modality registered later is seen.
def judge_names() -> tuple[str, ...]:
    """Every judge, as the registry's entries name them."""
    return tuple(dict.fromkeys(j for m in registry.MODALITIES.values() for j in m.reads))


def speech_judges() -> tuple[str, ...]:
    """The judges that read a recorded modality (log-mels)."""
    return tuple(dict.fromkeys(j for n in registry.names(registry.SPEECH) for j in registry.modality(n).reads))


def extra_names() -> dict[str, str]:
    """Image modality -> the file stem of its held-out real set beside the test split (Hoda's remaining digits,
    Dig-MNIST: other writers of the same script), which the report also scores. Those the bar holds come first:
    the report lists them in this order, and its lines before the figures it only shows."""
    stems = {n: registry.modality(n).source.splits["extra"] for n in registry.names(registry.IMAGE)
             if "extra" in registry.modality(n).source.splits}
    return dict(sorted(stems.items(), key=lambda item: "extra_accuracy" not in registry.modality(item[0]).bar))


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

    @property
    def feature_dim(self) -> int:
        return self.net[-1].in_features

    def forward(self, x):
        return self.net(self.pool(self.norm(x).unsqueeze(1)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        self.eval()
        return torch.cat([self(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The penultimate layer (pooled convolution features, before dropout and the classifier): the
        space in which the Fréchet distance compares generated and real data."""
        self.eval()
        body = self.net[:-2]
        return torch.cat([body(self.pool(self.norm(x[i:i + batch_size]).unsqueeze(1)))
                          for i in range(0, len(x), batch_size)])


def accuracy(judge: Judge, bank: Bank) -> float:
    return float((judge.predict(bank.items) == torch.as_tensor(bank.labels)).float().mean())


def fit(judge: Judge, bank: Bank, epochs: int, seed: int, augment: float, progress: bool, batch_size: int = 128):
    """Adam with a one-cycle schedule over the bank; `augment` is the strength of the geometric
    augmentation of images (0 for none)."""
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
            if augment > 0:
                x = augment_images(x, augment, generator)
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
    return Bank(torch.from_numpy(np.concatenate(mels)), bank.labels)


def with_round_trip(bank: Bank, front_end: AudioFrontEnd) -> Bank:
    """The bank and, after it, each of its log-mels after the Griffin-Lim round trip."""
    heard = resynthesised(bank, front_end)
    return Bank(torch.cat([bank.items, heard.items]), np.concatenate([bank.labels, heard.labels]))


def synthetic_voice_banks(front_end: AudioFrontEnd, seed: int = 0, renditions: int = SYNTHETIC_RENDITIONS,
                          progress: bool = True, held_out_only: bool = False) -> tuple[Bank | None, Bank]:
    """(training bank, held-out bank) of espeak-ng's voices: every English voice with the training variants,
    and with the held-out ones. Takes no data folder: nothing of FSDD can enter."""
    train_variants, held_variants = voices.split_variants(voices.variants())
    english = voices.english_voices()
    held = voices.synthetic_bank(voices.utterances(english, held_variants, renditions, seed + 1), front_end,
                                 progress=progress)
    if held_out_only:
        return None, held
    train = voices.synthetic_bank(voices.utterances(english, train_variants, renditions, seed), front_end,
                                  progress=progress)
    return train, held


def train_synthetic_judge(audio_cfg: AudioConfig, epochs: int = SYNTHETIC_EPOCHS, seed: int = 0,
                          renditions: int = SYNTHETIC_RENDITIONS, progress: bool = True) -> tuple[Judge, dict]:
    """The FSDD-free speech judge, and its accuracy on the held-out voices (as spoken and after Griffin-Lim)."""
    front_end = AudioFrontEnd(audio_cfg)
    train, held = synthetic_voice_banks(front_end, seed, renditions, progress)
    judge = Judge(audio_cfg.n_mels)
    judge.norm.fit(train.items)
    fit(judge, with_round_trip(train, front_end), epochs, seed, 0.0, progress)
    return judge, {"train_voices": len(train.labels) // (renditions * N_CLASSES),
                   "held_out_voices": len(held.labels) // (renditions * N_CLASSES),
                   "held_out_voices_accuracy": accuracy(judge, held),
                   "held_out_voices_griffin_lim_accuracy": accuracy(judge, resynthesised(held, front_end))}


def train_judges(data_dir, audio_cfg: AudioConfig, epochs: int = 4, speech_epochs: int = 12, seed: int = 0,
                 progress: bool = True, only=None, judges=None, report=None, image_aug: float = 0.5,
                 synthetic_epochs: int = SYNTHETIC_EPOCHS, renditions: int = SYNTHETIC_RENDITIONS):
    """Trains the judges named in `only` (default: all), keeping the others from `judges`/`report`.

    Each report gives the judge's accuracy on the real test split (images: also on the held-out set of
    other writers; speech: also after the Griffin-Lim round trip that generated speech goes through).
    """
    torch.manual_seed(seed)
    front_end = AudioFrontEnd(audio_cfg)
    judges, report = dict(judges or {}), dict(report or {})
    only = set(only or judge_names())
    extras = extra_names()
    for name in (n for n in registry.names(registry.IMAGE) if n in only):
        train, test = image_bank(data_dir, name, "train"), image_bank(data_dir, name, "test")
        judges[name] = fit(Judge(), train, epochs, seed, image_aug, progress)
        report[name] = {"test_accuracy": accuracy(judges[name], test)}
        if name in extras:
            report[name][f"{extras[name]}_accuracy"] = accuracy(judges[name], image_bank(data_dir, name, "extra"))
    # The judge named after a speech modality learns its real recordings; the others it lists are trained below.
    for name in (n for n in registry.names(registry.SPEECH) if n in only):
        train = recording_bank(data_dir, name, "train", front_end, aug_copies=1, seed=seed, progress=progress)
        judge = Judge(audio_cfg.n_mels)
        judge.norm.fit(train.items)
        judges[name] = fit(judge, with_round_trip(train, front_end), speech_epochs, seed, 0.0, progress)
        test = recording_bank(data_dir, name, "test", front_end, progress=False)
        report[name] = {"test_accuracy": accuracy(judges[name], test),
                        "griffin_lim_test_accuracy": accuracy(judges[name], resynthesised(test, front_end))}
    if SYNTHETIC in only:
        judges[SYNTHETIC], report[SYNTHETIC] = train_synthetic_judge(audio_cfg, synthetic_epochs, seed, renditions,
                                                                     progress)
        # FSDD's test recordings are read, never learnt from: how well a judge of other voices hears them.
        test = recording_bank(data_dir, judged_modality(SYNTHETIC).name, "test", front_end, progress=False)
        report[SYNTHETIC] |= {"test_accuracy": accuracy(judges[SYNTHETIC], test),
                              "griffin_lim_test_accuracy": accuracy(judges[SYNTHETIC], resynthesised(test, front_end))}
    return judges, report


class _Judges(nn.Module):
    def __init__(self, judges: dict[str, Judge]):
        super().__init__()
        self.judges = nn.ModuleDict(judges)


def save_judges(folder, judges: dict[str, Judge], report: dict, audio_cfg: AudioConfig) -> Path:
    folder = Path(folder)
    tensors = {k: v for k, v in _Judges(judges).state_dict().items()}
    meta = {"kind": "judges", "n_mels": audio_cfg.n_mels, "width": JUDGE_WIDTH, "rule": RULE, "report": report}
    checkpoint.atomic_write(folder / JUDGE_FILE, checkpoint.pack(tensors, meta))
    checkpoint.atomic_write_json(folder / "judges.json", meta)
    return folder / JUDGE_FILE


def load_judges(folder=None) -> tuple[dict[str, Judge], dict]:
    path = Path(folder or DEFAULT_JUDGES) / JUDGE_FILE
    tensors, meta = checkpoint.unpack(path)
    width = meta.get("width", 16)
    # A file from before the FSDD-free judge holds the other three; it still loads.
    present = {key.split(".")[1] for key in tensors}
    hear = speech_judges()
    holder = _Judges({n: Judge(meta["n_mels"] if n in hear else None, width) for n in judge_names() if n in present})
    try:
        holder.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this version of the judges: {exc}") from exc
    return {n: j.eval() for n, j in holder.judges.items()}, meta


def judges_id(judges_dir=None) -> str:
    """A short fingerprint of the judges' weights: reports judged by different judges do not compare."""
    path = Path(judges_dir or DEFAULT_JUDGES) / JUDGE_FILE
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"Cannot read the judges at {path} ({exc}); train them with "
                              "`python -m mvae.evaluation.judges`.") from exc
    # The weights alone, so that rewriting the file in a newer format keeps the reports comparable.
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--out", default=str(DEFAULT_JUDGES), help="folder for judges.safetensors and judges.json")
    p.add_argument("--epochs", type=int, default=4, help="passes over each image training set")
    p.add_argument("--speech-epochs", type=int, default=12, help="passes over the speech training set")
    p.add_argument("--synthetic-epochs", type=int, default=SYNTHETIC_EPOCHS,
                   help="passes over the synthetic voices (the FSDD-free speech judge)")
    p.add_argument("--renditions", type=int, default=SYNTHETIC_RENDITIONS,
                   help="utterances of each digit per synthetic voice")
    p.add_argument("--only", nargs="+", choices=list(judge_names()),
                   help="retrain only these judges and keep the others from --out")
    p.add_argument("--image-aug", type=float, default=0.5, help="strength of the geometric augmentation of digits")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)

    def body():
        kept, meta = load_judges(args.out) if args.only else ({}, {"report": {}})
        judges, report = train_judges(resolve_data_dir(args.data_dir), AudioConfig(), args.epochs, args.speech_epochs,
                                      args.seed, not args.no_progress, args.only, kept, meta["report"],
                                      args.image_aug, args.synthetic_epochs, args.renditions)
        save_judges(args.out, judges, report, AudioConfig())
        print(report)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
