"""The peer benchmark: MultiVae's MMVAE+, MoPoE-VAE, MVAE and MVTCAE beside the project's plain PoE and its
shipped recipe, trained on the same data at equal wall-clock and judged by the same judges.

    python -m benchmarks.peers --data-dir DATA_DIR                         # 30 minutes a model, one seed
    python -m benchmarks.peers --data-dir DATA_DIR --budget-min 4 --seeds 2 --readme README.md
    python -m benchmarks.peers --data-dir DATA_DIR --quick                 # about 2 minutes a model

Every contender trains on train.py's banks, label pairing (fresh pairs each epoch, mvae.data.paired) and digit
augmentation, with the shipped recipe's encoder and decoder networks (benchmarks/peer_models.py), for
--budget-min of wall-clock each (data loading and judging not counted). Each is then judged on one shared
subset of the test pairs (benchmarks/peer_eval.py). Needs requirements-bench.txt (MultiVae); a peer that
cannot be built or trained gets a row that says why, with the error.

Writes benchmarks/peers_results.json, prints the table, and with --readme pastes it into the file's
<!-- peers:start --> ... <!-- peers:end --> block; both are rewritten as each row completes, so that a run
stopped part-way shows what it finished and names the rows --resume still has to train.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.machine import machine
from benchmarks.peer_models import CONTENDERS, NAMES, PROJECT, build_peer, contender, project_trainer, stretched
from benchmarks.peer_table import readme_section
from mvae.config import shipped_configs
from mvae.errors import InputError, run_cli
from mvae.store import atomic_write

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "peers_results.json"
QUICK_BUDGET_MIN = 2.0
CALIBRATION_STEPS = 10  # steps timed before the recipe's schedule is stretched over the budget
MAX_ERROR_CHARS = 300  # of an error's first line in the table (the JSON keeps its traceback)
PEER_LR = 1e-3  # Adam, as MMVAE+, MoPoE and MVTCAE were trained in their papers and MultiVae's examples
# Test pairs, speech pairs (each a Griffin-Lim resynthesis), digits per class of the real sample that
# diversity compares with, and training/test items of the linear probe: full and --quick.
SIZES = {"eval_pairs": 2000, "speech_pairs": 300, "per_class": 100, "probe_items": 3000, "batch_size": 250}
QUICK_SIZES = {"eval_pairs": 300, "speech_pairs": 50, "per_class": 20, "probe_items": 300, "batch_size": 150}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--budget-min", type=float, default=None,
                   help="wall-clock minutes of training per model and seed (default 30, the recipe's budget; "
                        f"{QUICK_BUDGET_MIN:g} with --quick)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per model; the table gives the spread")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_BUDGET_MIN:g} minutes a model and small evaluation subsets: the whole path, fast")
    p.add_argument("--max-steps", type=int, default=0, help="stop each model after this many steps (0: the budget)")
    p.add_argument("--models", nargs="+", choices=NAMES, default=list(NAMES), metavar="MODEL",
                   help=f"which contenders to run (default: all of {', '.join(NAMES)})")
    p.add_argument("--judges", help="folder of the judges (default: checkpoints/judges)")
    p.add_argument("--threads", type=int, default=shipped_configs()[1].num_threads,
                   help="torch CPU threads (default: the recipe's)")
    p.add_argument("--out", default=str(RESULTS), help="where to write the results as JSON")
    p.add_argument("--readme", help="paste the table into this Markdown file's <!-- peers:start/end --> block")
    p.add_argument("--limit", type=int, default=None, help="cap each bank at this many items (a smoke test)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows --out already holds from a run with the same settings and train only the "
                        "models and seeds it lacks (each row is written as it completes), so that a run of hours "
                        "can be spread over several sittings")
    args = p.parse_args(argv)
    args.budget_min = args.budget_min if args.budget_min is not None else (QUICK_BUDGET_MIN if args.quick else 30.0)
    problems = [f"--{name} must be positive, not {value}" for name, value in
                (("budget-min", args.budget_min), ("seeds", args.seeds), ("threads", args.threads))
                if not (math.isfinite(value) and value > 0)]
    if args.max_steps < 0:
        problems.append(f"--max-steps must be 0 (no limit) or more, not {args.max_steps}")
    if problems:
        p.error("; ".join(problems))
    return args


def load_data(data_dir, limit, progress: bool):
    """train.py's banks of the shipped recipe (its augmented speech copies, its cache) and their pairing."""
    from mvae.data.cache import BankCache, default_cache_dir
    from mvae.data.checks import check_dataset
    from mvae.training.loop import load_training_data

    model_cfg, train_cfg = shipped_configs()
    check_dataset(data_dir, model_cfg.modalities, ("train", "test"), model_cfg.audio)
    return load_training_data(data_dir, model_cfg, train_cfg, progress=progress, limit=limit,
                              cache=BankCache(default_cache_dir()))


class Clock:
    """The training budget of one contender: wall-clock seconds and, optionally, a number of steps."""

    def __init__(self, seconds: float, max_steps: int):
        self.seconds, self.max_steps = seconds, max_steps
        self.started = time.monotonic()

    def restart(self) -> None:
        """Starts the budget once the model is built: the budget is training time."""
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self, steps: int) -> bool:
        return self.elapsed() >= self.seconds or (self.max_steps and steps >= self.max_steps)

    def expected_steps(self, steps: int) -> int:
        """The steps the budget will hold at the pace of the first `steps`."""
        by_time = int(steps * self.seconds / max(self.elapsed(), 1e-9))
        return min(by_time, self.max_steps) if self.max_steps else by_time


def batches(data, train_cfg):
    """train.py's batches, epoch after epoch of fresh label pairs: (epoch, batch number, batch)."""
    epoch = 0
    while True:
        pairs = data.train.epoch_pairs(epoch, train_cfg.pairs_per_epoch)
        for b, batch in data.train.batches(pairs, train_cfg.batch_size):
            yield epoch, b, batch
        epoch += 1


def train_project(c, data, train_cfg, clock: Clock, workdir: Path):
    """The project's model through its own trainer's step, its schedule stretched over the budget's steps."""
    trainer, adapter = project_trainer(c, train_cfg, data, workdir)
    clock.restart()
    steps = pairs = 0
    for _, _, batch in batches(data, train_cfg):
        if clock.done(steps):
            break
        trainer._step(batch, steps)
        steps, pairs = steps + 1, pairs + len(next(iter(batch.values())))
        if steps == CALIBRATION_STEPS:
            trainer.cfg = stretched(trainer.cfg, clock.expected_steps(steps), trainer.steps_per_epoch)
    return adapter, steps, pairs


def train_peer(c, data, train_cfg, clock: Clock, seed: int):
    """A MultiVae model under its own loss, on the same batches and digit augmentation as train.py's."""
    adapter = build_peer(c, data.train.banks, seed)
    optimiser = torch.optim.Adam(adapter.parameters(), lr=PEER_LR)
    generator = torch.Generator().manual_seed(seed)
    clock.restart()
    steps_per_epoch = -(-train_cfg.pairs_per_epoch // train_cfg.batch_size)
    steps = pairs = 0
    for epoch, b, batch in batches(data, train_cfg):
        if clock.done(steps):
            break
        for name, modality in adapter.holder.modalities.items():
            if name in batch:
                batch[name] = modality.augment(batch[name], train_cfg.image_aug, generator)
        loss = adapter.loss(batch, epoch + 1, b / steps_per_epoch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {steps}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        steps, pairs = steps + 1, pairs + len(batch[name])
    return adapter, steps, pairs


def run_one(name: str, data, judges, front_end, args, seed: int, sizes: dict) -> dict:
    """One contender and seed: trained for the budget, then judged; an error is kept in the row."""
    from benchmarks.peer_eval import judge_contender

    c = contender(name)
    train_cfg = replace(shipped_configs()[1], seed=seed)
    row = {"model": name, "family": c.family, "seed": seed, "hyperparameters": c.source}
    torch.manual_seed(seed)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            clock = Clock(args.budget_min * 60, args.max_steps)
            if c.family == PROJECT:
                adapter, steps, pairs = train_project(c, data, train_cfg, clock, Path(workdir))
            else:
                adapter, steps, pairs = train_peer(c, data, train_cfg, clock, seed)
            seconds = clock.elapsed()
            row |= {"steps": steps, "pairs": pairs, "train_seconds": seconds, "samples_per_second": pairs / seconds,
                    "parameters": sum(p.numel() for p in adapter.parameters())}
            started = time.monotonic()
            row |= judge_contender(adapter, data, judges, front_end, sizes, seed)
            row["judge_seconds"] = time.monotonic() - started
    except Exception as exc:  # a peer that cannot run on this data is reported, not fatal
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row["error"] = f"{type(exc).__name__}: {first[:MAX_ERROR_CHARS]}"
        row["traceback"] = traceback.format_exc(limit=6)
    return row


# The settings a resumed run must share with the rows it keeps: otherwise they would not compare.
RESUME_KEYS = ("budget_minutes", "max_steps", "quick", "threads", "sizes", "limit")


def settings(args) -> dict:
    return {"budget_minutes": args.budget_min, "max_steps": args.max_steps, "quick": args.quick,
            "threads": args.threads, "sizes": QUICK_SIZES if args.quick else SIZES, "limit": args.limit}


def kept_rows(args) -> tuple[dict[tuple[str, int], dict], float]:
    """For --resume: (model, seed) -> the finished row --out holds, and the seconds its run took so far;
    InputError where its settings differ."""
    out = Path(args.out)
    if not args.resume or not out.is_file():
        return {}, 0.0
    try:
        previous = json.loads(out.read_text())
    except ValueError as exc:
        raise InputError(f"--resume: {out} is not the JSON of an earlier run ({exc}); move it away or leave out "
                         "--resume") from None
    want = settings(args)
    differing = [k for k in RESUME_KEYS if previous.get(k) != want[k]]
    if differing:
        raise InputError(f"--resume: {out} was run with other settings ({', '.join(differing)}); run with the same "
                         "flags, or give another --out")
    return ({(r["model"], r["seed"]): r for r in previous.get("rows", []) if "error" not in r},
            previous.get("wall_seconds", 0.0))


def run(args, argv) -> dict:
    from mvae.data.sources import resolve_data_dir
    from mvae.evaluation.judges import load_judges
    from mvae.signals.audio import AudioFrontEnd

    torch.set_num_threads(args.threads)
    data_dir = resolve_data_dir(args.data_dir)
    sizes = QUICK_SIZES if args.quick else SIZES
    started = time.time()
    data = load_data(data_dir, args.limit, progress=False)
    judges, _ = load_judges(args.judges)
    front_end = AudioFrontEnd(shipped_configs()[0].audio)
    kept, earlier = kept_rows(args)
    rows = []

    def results(complete: bool) -> dict:
        return settings(args) | {
            "seeds": args.seeds, "machine": machine(), "complete": complete,
            "contenders": [{"model": c.name, "family": c.family, "hyperparameters": c.source} for c in CONTENDERS
                           if c.name in args.models],
            "rows": rows, "wall_seconds": earlier + time.time() - started,
            "command": shlex.join(["python", "-m", "benchmarks.peers",
                                   *(w for w in shown_arguments(argv) if w != "--resume")])}

    for seed in range(args.seeds):
        for name in args.models:
            if (name, seed) in kept:
                print(f"{name}, seed {seed}: kept from {args.out}", flush=True)
                rows.append(kept[(name, seed)])
                continue
            print(f"{name}, seed {seed}: training for {args.budget_min:g} min", flush=True)
            where = machine()  # before training, so that its load average is that of other jobs
            rows.append(run_one(name, data, judges, front_end, args, seed, sizes) | {"machine": where})
            print(f"{name}, seed {seed}: " + (rows[-1].get("error") or f"{rows[-1]['steps']} steps"), flush=True)
            # Each row as it completes: an interrupted run keeps what it finished, for --resume, and the README
            # shows it with the rows still to come.
            write(args, results(False))
    return results(True)


def write(args, results: dict) -> str:
    """The results to --out and their section to --readme's block; the section."""
    atomic_write(Path(args.out), (json.dumps(results, indent=1, default=float) + "\n").encode())
    section = readme_section(results)
    if args.readme:
        from mvae.evaluation.render import replace_block

        readme = Path(args.readme)
        atomic_write(readme, replace_block(readme.read_text(), "peers", section).encode())
    return section


def shown_arguments(argv) -> list[str]:
    """The command line as anyone can re-run it: where the data lives on this machine is left out."""
    words, skip = [], False
    for word in argv:
        words.append("DATA_DIR" if skip else "--data-dir=DATA_DIR" if word.startswith("--data-dir=") else word)
        skip = word == "--data-dir"
    return words


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        if args.readme and not (Path(args.readme).is_file()
                                and "<!-- peers:start -->" in Path(args.readme).read_text()):
            raise InputError(f"{args.readme} has no <!-- peers:start --> ... <!-- peers:end --> block to paste the "
                             "table into; add one where the table should go")
        print(write(args, run(args, sys.argv[1:] if argv is None else argv)))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
