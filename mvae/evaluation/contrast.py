"""Choose a trained model's log-mel contrast (`ModelConfig.log_mel_contrast`, the postfilter of decoded speech)
and write it into its checkpoint.

    python -m mvae.evaluation.contrast checkpoints/default --data-dir DATA_DIR

Every direction into a vocoded modality (from the label, from each input modality, and from itself in its own
voice), at the bar's temperature and at the means, is generated once from pairs of the training split, then
each candidate contrast is applied and the result is vocoded and read by every judge of that modality. The
candidate with the best mean reading wins; the test splits are never looked at, so the evaluator's figures
stay held-out. The checkpoint keeps every candidate's readings in its info, under `log_mel_contrast`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from .. import checkpoint, registry
from ..config import LABEL
from ..data.banks import load_banks
from ..data.paired import Bank, PairedDataset
from ..data.sources import resolve_data_dir
from ..errors import run_cli
from ..kinds import kind
from ..model.model import MVAE
from ..runtime.forward import contrasted
from ..signals.audio import AudioFrontEnd
from .bar import GENERATION_TEMPERATURE
from .coherence import direction_key
from .judges import DEFAULT_JUDGES, accuracy, load_judges, resynthesised

CANDIDATES = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
TEMPERATURES = (GENERATION_TEMPERATURE, 0.0)


def directions_into(model: MVAE, target: str) -> list[tuple[str, ...]]:
    """The sources each generate `target` from: the label, then each input modality (the target itself too)."""
    return [(LABEL,)] + [(name,) for name in model.input_names]


def contrast_seconds(info: dict) -> float | None:
    """How long train.py's last step, choosing the contrast, took (after the training clock stopped), if recorded."""
    tuned = info.get("log_mel_contrast")
    return tuned.get("seconds") if isinstance(tuned, dict) else None


def command_seconds(info: dict) -> float | None:
    """train.py's whole command, as a checkpoint's info records it: the training state's wall clock, then the
    contrast step."""
    wall = info.get("wall_seconds")
    return None if wall is None else wall + (contrast_seconds(info) or 0.0)


@torch.no_grad()
def readings(model: MVAE, judges: dict, batch: dict, front_end: AudioFrontEnd, candidates=CANDIDATES,
             seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Candidate -> judge -> "sources->target@T" -> the share of the batch the judge reads as its label, each
    direction generated once (at contrast 1) and every candidate applied to the same log-mels."""
    model.eval()
    plain = replace(model.cfg, log_mel_contrast=1.0)
    kept, model.cfg = model.cfg, plain
    generator = torch.Generator().manual_seed(seed)
    labels = np.asarray(batch[LABEL])
    out: dict = {f"{c:g}": {} for c in candidates}
    try:
        for target in (t for t in model.input_names if kind(t).vocoded):
            readers = [j for j in registry.modality(target).reads if j in judges]
            for sources in directions_into(model, target):
                for temperature in TEMPERATURES:
                    made = model.generate({s: batch[s] for s in sources}, [target], temperature, generator)[target]
                    key = f"{direction_key(sources, target)}@{temperature:g}"
                    for c in candidates:
                        sharper = contrasted(torch, made, c, math.log(model.cfg.audio.log_floor))
                        heard = resynthesised(Bank(sharper.cpu(), labels), front_end)
                        for j in readers:
                            out[f"{c:g}"].setdefault(j, {})[key] = accuracy(judges[j], heard)
    finally:
        model.cfg = kept
    return out


def mean_reading(by_judge: dict[str, dict[str, float]]) -> float:
    values = [v for directions in by_judge.values() for v in directions.values()]
    return float(np.mean(values))


def choose(found: dict) -> float:
    """The candidate with the best mean reading over every judge and direction; a tie goes to the one nearest 1
    (the decoder's own output)."""
    return max((float(c) for c in found), key=lambda c: (round(mean_reading(found[f"{c:g}"]), 6), -abs(c - 1)))


def training_batch(model: MVAE, data_dir, front_end: AudioFrontEnd, items: int, seed: int, progress: bool) -> dict:
    train = PairedDataset(load_banks(data_dir, "train", front_end, model.input_names, progress=progress))
    pairs = train.covering_pairs()
    rows = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:items])
    return train.batch(pairs, rows)


def table(found: dict, chosen: float) -> str:
    judges = sorted({j for by in found.values() for j in by})
    lines = ["| contrast | " + " | ".join(judges) + " | mean |", "|---" * (len(judges) + 2) + "|"]
    for c, by in found.items():
        mark = " (chosen)" if float(c) == chosen else ""
        cells = [f"{np.mean(list(by[j].values())):.3f}" for j in judges]
        lines.append(f"| {c}{mark} | " + " | ".join(cells) + f" | {mean_reading(by):.3f} |")
    return "\n".join(lines)


def tune(path, data_dir, judges_dir=None, items: int = 300, seed: int = 0, progress: bool = True,
         write: bool = True) -> tuple[float, dict]:
    """(the chosen contrast, every candidate's readings); with `write`, the checkpoint is rewritten with it."""
    started = time.monotonic()
    model, meta = checkpoint.load_model(path)
    front_end = AudioFrontEnd(model.cfg.audio)
    judges, _ = load_judges(judges_dir)
    batch = training_batch(model, data_dir, front_end, items, seed, progress)
    found = readings(model, judges, batch, front_end, seed=seed)
    chosen = choose(found)
    if write:
        model.cfg = replace(model.cfg, log_mel_contrast=chosen).validate()
        info = dict(meta.get("info", {})) | {"log_mel_contrast": {"chosen": chosen, "items": items, "seed": seed,
                                                                  "split": "train", "readings": found,
                                                                  "seconds": time.monotonic() - started}}
        checkpoint.save_model(checkpoint.model_path(path).parent, model, info, meta.get("dtype", "float32"))
    return chosen, found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint folder or model.safetensors")
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--judges", default=str(DEFAULT_JUDGES), help="folder of the judges")
    p.add_argument("--items", type=int, default=300, help="training pairs each direction is generated from")
    p.add_argument("--seed", type=int, default=0, help="which training pairs, and the temperature's draws")
    p.add_argument("--dry-run", action="store_true", help="print the readings and leave the checkpoint as it is")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)

    def body():
        chosen, found = tune(args.checkpoint, resolve_data_dir(args.data_dir), args.judges, args.items, args.seed,
                             not args.no_progress, not args.dry_run)
        print(table(found, chosen))
        print(f"log_mel_contrast = {chosen:g}" + ("" if args.dry_run else f", written to {args.checkpoint}"))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
