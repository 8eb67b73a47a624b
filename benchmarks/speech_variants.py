"""Variants of the recipe's speech side, trained side by side and heard by both speech judges.

Each variant is the shipped recipe (mvae.config.SHIPPED_RECIPE) with a few model fields changed. All of them
train at once, one process each with `--threads` torch threads, on the default device (CUDA when present);
the banks are made once, first, into a cache the runs share. Each trained model is then scored on every
direction into speech (from the label, from Farsi, from Kannada, and from speech in its own voice), at
temperature 1 and at the means, by the FSDD judge and the FSDD-free judge, as the evaluator scores them
(generated log-mel -> Griffin-Lim -> log-mel). It is a screen, not the evaluator: fewer test pairs
(`--pairs`), and `--epochs` may shorten the runs.

    python -m benchmarks.speech_variants --data-dir DATA_DIR --epochs 3 --pairs 200

Writes every run's figures and per-epoch seconds to `--out` (benchmarks/speech_variants_results.json) with
the machine and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import machine
from mvae import registry
from mvae.checkpoint import atomic_write_json
from mvae.config import LABEL, shipped_configs
from mvae.data.cache import BankCache
from mvae.folders import machine_free
from mvae.training.loop import Trainer, load_training_data

RESULTS = Path(__file__).with_name("speech_variants_results.json")
CONV = {"speech_decoder": "conv", "decoded_subsets": 2}  # the transposed-conv speech decoder, 2 subsets decoded
VARIANTS: dict[str, dict] = {
    "mlp decoder, every subset (the recipe)": {},
    "mlp decoder, 2 subsets": {"decoded_subsets": 2},
    "conv 16, 2 subsets": CONV,
    "conv 16, 2 subsets, speech ×2": CONV | {"speech_weight": 2.0},
    "conv 16, 2 subsets, speech ×4": CONV | {"speech_weight": 4.0},
    "conv 32, 2 subsets, speech ×2": CONV | {"speech_conv_channels": 32, "speech_weight": 2.0},
    "conv 16, 3 subsets, speech ×2": CONV | {"decoded_subsets": 3, "speech_weight": 2.0},
    # Augmented copies shifted by up to 8 of 64 frames ask the decoder for a word whose onset it cannot know.
    "mlp decoder, every subset, copies not shifted": {"audio": {"aug_shift_frames": 0}},
    # ... and for a speed, pitch and noise it cannot know either: each copy reconstructs its original.
    "mlp decoder, every subset, clean targets": {"train": {"clean_targets": True}},
}


def heard(modalities) -> tuple[str, ...]:
    """The speech modalities among these: the ones a variant's speech side makes."""
    return tuple(n for n in registry.names(registry.SPEECH) if n in modalities)


def directions(modalities) -> list[tuple[tuple[str, ...], str]]:
    """Each direction into speech: from each modality alone, the target itself (its own voice) included."""
    return [((source,), target) for target in heard(modalities) for source in modalities]


def configs(change: dict, epochs: int | None):
    model_cfg, train_cfg = shipped_configs()
    change = dict(change)
    train_cfg = dataclasses.replace(train_cfg, **change.pop("train", {}))
    if "speech_weight" in change:
        weight = change.pop("speech_weight")
        change["recon_weights"] = {**model_cfg.recon_weights, **dict.fromkeys(heard(model_cfg.modalities), weight)}
    if "audio" in change:
        change["audio"] = dataclasses.replace(model_cfg.audio, **change["audio"])
    model_cfg = dataclasses.replace(model_cfg, **change).validate()
    # The test split is watched once, at the end: the figures below are what is compared.
    train_cfg = dataclasses.replace(train_cfg, eval_every=100_000, **({"epochs": epochs} if epochs else {}))
    return model_cfg, train_cfg.validate()


def speech_scores(model, data_dir, pairs: int) -> dict[str, float]:
    """Each direction into speech by each speech judge, at temperature 1 and (suffix "@0") at the means."""
    from mvae.data.banks import load_banks
    from mvae.data.paired import PairedDataset
    from mvae.evaluation.coherence import ModelGenerator, coherence_by, label_coherence_by
    from mvae.evaluation.judges import load_judges
    from mvae.signals.audio import AudioFrontEnd

    model = model.cpu().eval()
    front_end = AudioFrontEnd(model.cfg.audio)
    judges, _ = load_judges()
    targets = heard(model.input_names)
    readers = dict.fromkeys(j for t in targets for j in registry.modality(t).reads)
    # A judge reads only the targets whose registry entry names it.
    by = {j: (lambda target, made, j=j: judges[j].predict(made) if j in registry.modality(target).reads else None)
          for j in readers}
    test = PairedDataset(load_banks(data_dir, "test", front_end, model.input_names, progress=False))
    covering = test.covering_pairs()
    order = np.random.default_rng(0).permutation(len(covering))[:pairs]
    scores = {}
    for temperature, suffix in ((1.0, ""), (0.0, "@0")):
        generate = ModelGenerator(model, front_end, temperature=temperature, seed=1)
        batches = (test.batch(covering, order[i:i + 250]) for i in range(0, len(order), 250))
        figures = coherence_by(generate, by, batches, directions(model.input_names))
        from_label = label_coherence_by(generate, by, targets, pairs // 10 if temperature else 1)
        for j in by:
            scores |= {f"{j}:{key}{suffix}": value for key, value in figures[j].items()}
            scores |= {f"{j}:{LABEL}->{t}{suffix}": value for t, value in from_label[j].items()}
    return scores


def run_one(name: str, args) -> dict:
    model_cfg, train_cfg = configs(VARIANTS[name], args.epochs)
    train_cfg = dataclasses.replace(train_cfg, num_threads=args.threads)
    started = time.monotonic()
    data = load_training_data(args.data_dir, model_cfg, train_cfg, progress=False, cache=BankCache(args.cache))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model_cfg, train_cfg, data, out, device=args.device, progress=False, started=started)
        metrics = trainer.fit()
    scored = time.monotonic()
    return {"variant": name, "change": VARIANTS[name], "epochs": train_cfg.epochs,
            "device": str(trainer.device), "epoch_seconds": [h["seconds"] for h in trainer.history],
            "unimodal_accuracy": metrics.get("unimodal_accuracy"),
            # Under the kind's name: the figures into every speech modality, their keys naming the target.
            registry.SPEECH: speech_scores(trainer.model, args.data_dir, args.pairs),
            "score_seconds": time.monotonic() - scored}


def table_line(scores: dict[str, float]) -> str:
    """A run's figures at temperature 1: for each speech modality, each of its judges, from the label and from
    each modality."""
    return " ".join(f"{scores.get(f'{j}:{d}->{t}', float('nan')):.2f}" for t in registry.names(registry.SPEECH)
                    for j in registry.modality(t).reads for d in (LABEL, *registry.names()))


def shown_command(argv: list[str]) -> str:
    """The command as anyone can re-run it: the data folder as DATA_DIR, the cache folder left out, and a
    variant's name quoted."""
    words = machine_free(argv, dropped=("--cache",))
    return "python -m benchmarks.speech_variants " + " ".join(map(shlex.quote, words))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MVAE_DATA_DIR", "data"))
    p.add_argument("--epochs", type=int, help="epochs per run (default: the recipe's)")
    p.add_argument("--pairs", type=int, default=200, help="test pairs (and digits from the label) per direction")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--only", nargs="*", choices=list(VARIANTS), help="these variants (default: all)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mvae-speech-variants")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--one", help=argparse.SUPPRESS)  # a child process: train and score this variant
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args)), flush=True)
        return 0

    names = args.only or list(VARIANTS)
    started = time.monotonic()
    model_cfg, train_cfg = configs(VARIANTS[names[0]], args.epochs)
    load_training_data(args.data_dir, model_cfg, train_cfg, progress=False, cache=BankCache(args.cache))
    banks_seconds = time.monotonic() - started
    child = [sys.executable, "-m", "benchmarks.speech_variants", *(argv if argv is not None else sys.argv[1:])]
    runs = [subprocess.Popen([*child, "--one", name], stdout=subprocess.PIPE, text=True) for name in names]
    results = []
    for name, run in zip(names, runs):
        lines = run.communicate()[0].strip().splitlines()
        if run.returncode or not lines:
            print(f"{name}: the run failed (exit {run.returncode})", file=sys.stderr)
            continue
        results.append(json.loads(lines[-1]))
    atomic_write_json(args.out, {
        "command": shown_command(argv if argv is not None else sys.argv[1:]),
        "machine": machine() + (f"; {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "concurrent_runs": len(names), "banks_seconds": banks_seconds, "runs": results})
    for r in results:
        print(f"{r['variant']:<36} {table_line(r[registry.SPEECH])}")
    return 0 if len(results) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
