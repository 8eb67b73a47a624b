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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import machine
from mvae.checkpoint import atomic_write_json
from mvae.config import shipped_configs
from mvae.data.cache import BankCache
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
}
DIRECTIONS = ((("farsi",), "speech"), (("kannada",), "speech"), (("speech",), "speech"))


def configs(change: dict, epochs: int | None):
    model_cfg, train_cfg = shipped_configs()
    change = dict(change)
    if "speech_weight" in change:
        change["recon_weights"] = {**model_cfg.recon_weights, "speech": change.pop("speech_weight")}
    model_cfg = dataclasses.replace(model_cfg, **change).validate()
    # The test split is watched once, at the end: the figures below are what is compared.
    train_cfg = dataclasses.replace(train_cfg, eval_every=100_000, **({"epochs": epochs} if epochs else {}))
    return model_cfg, train_cfg.validate()


def speech_scores(model, data_dir, pairs: int) -> dict[str, float]:
    """Each direction into speech by each speech judge, at temperature 1 and (suffix "@0") at the means."""
    from mvae.data.banks import load_banks
    from mvae.data.paired import PairedDataset
    from mvae.evaluation.coherence import ModelGenerator, coherence_by, label_coherence_by
    from mvae.evaluation.judges import SPEECH_JUDGES, load_judges
    from mvae.signals.audio import AudioFrontEnd

    model = model.cpu().eval()
    front_end = AudioFrontEnd(model.cfg.audio)
    judges, _ = load_judges()
    by = {j: (lambda target, made, j=j: judges[j].predict(made)) for j in SPEECH_JUDGES}
    test = PairedDataset(load_banks(data_dir, "test", front_end, model.input_names, progress=False))
    covering = test.covering_pairs()
    order = np.random.default_rng(0).permutation(len(covering))[:pairs]
    scores = {}
    for temperature, suffix in ((1.0, ""), (0.0, "@0")):
        generate = ModelGenerator(model, front_end, temperature=temperature, seed=1)
        batches = (test.batch(covering, order[i:i + 250]) for i in range(0, len(order), 250))
        heard = coherence_by(generate, by, batches, DIRECTIONS)
        from_label = label_coherence_by(generate, by, ["speech"], pairs // 10 if temperature else 1)
        for j in by:
            scores |= {f"{j}:{key}{suffix}": value for key, value in heard[j].items()}
            scores[f"{j}:label->speech{suffix}"] = from_label[j]["speech"]
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
            "speech": speech_scores(trainer.model, args.data_dir, args.pairs),
            "score_seconds": time.monotonic() - scored}


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
        "command": "python -m benchmarks.speech_variants " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine() + (f"; {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "concurrent_runs": len(names), "banks_seconds": banks_seconds, "runs": results})
    for r in results:
        s = r["speech"]
        print(f"{r['variant']:<36} " + " ".join(f"{s[f'{j}:{d}->speech']:.2f}" for j in ("speech", "speech_synthetic")
                                               for d in ("label", "farsi", "kannada", "speech")))
    return 0 if len(results) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
