"""Speed benchmarks of the demo, printed as one Markdown table.

    python -m benchmarks.run            # the full run: more repetitions, a minute or two
    python -m benchmarks.run --quick    # the same table within about a minute

(from the repository's root, so that `benchmarks` and `tests` import as packages).

1. Training throughput of the batched objective against a per-subset loop (benchmarks/naive.py).
2. `predict` latency on the CPU, for a drawing and for a 2 s 44.1 kHz stereo recording, on the lean runtime
   and on the torch runtime it replaced (benchmarks/lean_bench.py).
3. The Streamlit app: cold start and the server's memory after a drawing and a recording.
4. The wall time that training the shipped checkpoint took, read from its model.json.
5. A fresh interpreter's start: import, load, a canvas and a recording, with each runtime.
6. The size of a fresh virtual environment made from requirements.txt.

Ratios are measured inside one run with the two contenders interleaved, so that other work on the
machine slows both alike. Benchmarks 1 and 2 run on one torch thread unless `--threads` says otherwise:
on a machine that other jobs share, threads that wait on each other turn each small operation into a wait
for a time slice, and the timings then measure the other jobs. A prediction is a batch of one, which more
threads barely speed up anyway.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.inputs import canvas_drawing, random_batch, stereo_recording
from benchmarks.machine import machine
from mvae.evaluation.render import read_block, replace_block
from mvae.store import atomic_write

ROOT = Path(__file__).resolve().parent.parent

TARGET_SPEEDUP = 3.0
TARGET_COLD_START_S = 5.0
TARGET_RSS_MB = 1024.0
TARGET_TRAIN_MINUTES = 30.0  # the shipped recipe, whole command, on 2 CPU cores


@dataclass
class Row:
    name: str
    result: str
    target: str
    met: bool | None  # None: no target, or not measured
    notes: str = ""


@dataclass
class Settings:
    throughput_repeats: int
    throughput_steps: int
    latency_runs: int
    app_starts: int


FULL = Settings(throughput_repeats=9, throughput_steps=8, latency_runs=200, app_starts=3)
QUICK = Settings(throughput_repeats=3, throughput_steps=2, latency_runs=20, app_starts=1)


# -- the machine ------------------------------------------------------------------------------------
def checkpoint_path() -> Path | None:
    """The folder `mvae.load()` would use, or None when there is no checkpoint to load."""
    from mvae.checkpoint import model_path
    from mvae.inference import DEFAULT_CHECKPOINT

    path = Path(os.environ.get("MVAE_CHECKPOINT") or DEFAULT_CHECKPOINT)
    return path if model_path(path).is_file() else None


def relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def shipped_model_config():
    from mvae.checkpoint import read_metadata
    from mvae.config import ModelConfig, model_config_from_dict

    path = checkpoint_path()
    return model_config_from_dict(read_metadata(path)["model_config"]) if path else ModelConfig()


# -- 1. training throughput ---------------------------------------------------------------------------
def bench_throughput(settings: Settings, batch_size: int = 128) -> list[Row]:
    from benchmarks.naive import naive_loss
    from mvae.model.model import MVAE
    from mvae.model.objectives import mvae_objective

    # The shipped networks under the plain PoE objective, which is what the per-subset baseline computes: the
    # style latents' terms (own-style cross terms, the style swap) have no per-subset form in the seed.
    recipe = shipped_model_config()
    cfg = dataclasses.replace(recipe, style_dim=0, swap_weight=0.0, shared_kl_weight=1.0, decoded_subsets=0)
    torch.manual_seed(0)
    model = MVAE(cfg).train()
    # The recipe decodes each example from `decoded_subsets` subsets: an unbiased estimate of the same sum.
    subsampled = MVAE(dataclasses.replace(cfg, decoded_subsets=recipe.decoded_subsets)).train()
    subsampled.load_state_dict(model.state_dict())
    sub_optimizer = torch.optim.Adam(subsampled.parameters(), lr=1e-4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(model, batch_size, torch.Generator().manual_seed(0))

    # Both compute the same loss; only how they get there differs.
    with torch.no_grad():
        ours = mvae_objective(model, batch, sample=False).loss
        theirs = naive_loss(model, batch, sample=False)
    if not torch.allclose(ours, theirs, rtol=1e-4):
        raise AssertionError(f"the baseline computes a different loss: {theirs.item()} vs {ours.item()}")

    def stepper(loss_fn, opt):
        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()
        return step

    contenders = {
        "batched": stepper(lambda: mvae_objective(model, batch).loss, optimizer),
        "naive": stepper(lambda: naive_loss(model, batch), optimizer),
    }
    if 0 < recipe.decoded_subsets < len(model.training_subsets()):
        contenders["subsampled"] = stepper(lambda: mvae_objective(subsampled, batch).loss, sub_optimizer)
    described = (f"{cfg.architecture} hidden {cfg.hidden}, latent {cfg.latent_dim}, the plain PoE objective; "
                 f"batch {batch_size}; "
                 f"{len(model.training_subsets())} subsets (the {2 ** len(cfg.modalities) - 1} of the inputs and "
                 "the label alone); "
                 "forward + backward + Adam; 1a and 1b compute the same loss")
    for step in contenders.values():  # warm-up: allocator, thread pool, Adam state
        step()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(settings.throughput_repeats):
        order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
        for name in order:
            started = time.perf_counter()
            for _ in range(settings.throughput_steps):
                contenders[name]()
            rates[name].append(settings.throughput_steps * batch_size / (time.perf_counter() - started))

    median = {name: statistics.median(values) for name, values in rates.items()}
    steps = settings.throughput_steps
    timed = (f"median of {settings.throughput_repeats} runs of {steps} step{'s' if steps != 1 else ''} each, "
             f"the {len(contenders)} interleaved")

    def spread(name):
        ratios = [b / n for b, n in zip(rates[name], rates["naive"])]
        return f"per-run ratios {min(ratios):.2f}–{max(ratios):.2f}×"

    ratio = median["batched"] / median["naive"]
    rows = [
        Row("1a. training throughput, batched objective (mvae_objective), every subset decoded",
            f"{median['batched']:,.0f} samples/s", "", None),
        Row("1b. training throughput, per-subset loop (benchmarks/naive.py)", f"{median['naive']:,.0f} samples/s", "",
            None),
    ]
    if "subsampled" not in median:
        return rows + [Row("1c. speed-up of 1a over 1b", f"{ratio:.2f}×", f"≥ {TARGET_SPEEDUP:g}×",
                           ratio >= TARGET_SPEEDUP, f"{described}; {timed}; {spread('batched')}")]
    sub_ratio = median["subsampled"] / median["naive"]
    k = recipe.decoded_subsets
    return rows + [
        Row(f"1a'. the same, the recipe's {k} subsets decoded an example (--decoded-subsets {k})",
            f"{median['subsampled']:,.0f} samples/s", "", None),
        Row("1c. speed-up of the recipe's objective (1a') over 1b", f"{sub_ratio:.2f}×", f"≥ {TARGET_SPEEDUP:g}×",
            sub_ratio >= TARGET_SPEEDUP,
            f"{described}; 1a' decodes each example from the joint posterior and {k - 1} subset(s) drawn at random, "
            f"an unbiased estimate of that loss (the step is the same otherwise); {timed}; {spread('subsampled')}; "
            f"every subset decoded (1a) is {ratio:.2f}× ({spread('batched')})"),
    ]


# -- 2. predict latency -----------------------------------------------------------------------------------
def bench_latency(settings: Settings) -> list[Row]:
    """2 and 5: the lean runtime against the torch runtime it replaced (benchmarks/lean_bench.py)."""
    from benchmarks.lean_bench import rows

    path = checkpoint_path()
    if path is None:
        return [Row("2. predict latency", "not measured", "", None, "no checkpoint found")]
    return rows(settings, path, stereo_recording(), canvas_drawing(), Row)


def bench_venv(settings: Settings) -> list[Row]:
    from benchmarks.lean_bench import venv_row

    return venv_row(Row)


# -- 3. the app -----------------------------------------------------------------------------------------------
def bench_app(settings: Settings) -> list[Row]:
    from benchmarks.app_bench import measure_app

    return measure_app(ROOT, settings.app_starts, TARGET_COLD_START_S, TARGET_RSS_MB, Row)


# -- 4. training to the quality bar ---------------------------------------------------------------------------
def train_command(meta: dict, folder: str) -> str:
    """The train.py command that reproduces a checkpoint: recorded, or rebuilt from its configs."""
    info = meta.get("info", {})
    if info.get("command"):
        command = info["command"]
        return command if isinstance(command, str) else " ".join(command)
    from mvae.config import SHIPPED_SAVE_DTYPE, ModelConfig, TrainConfig, shipped_configs
    from mvae.fields import flag_fields

    # A flag for every value that differs from train.py's default (the shipped recipe). A field a
    # checkpoint predates had the dataclass default, which the recipe may have changed since.
    model_defaults, train_defaults = shipped_configs()
    parts = ["python train.py", f"--out {folder}"]
    train_cfg = {**dataclasses.asdict(TrainConfig()), **info.get("train_config", {})}
    for f in flag_fields(TrainConfig):
        if train_cfg[f.name] != getattr(train_defaults, f.name):
            parts.append(f"--{f.name.replace('_', '-')} {shlex.quote(str(train_cfg[f.name]))}")
    model_cfg = {**dataclasses.asdict(ModelConfig()), **meta.get("model_config", {})}
    for f in flag_fields(ModelConfig):
        value, default = model_cfg[f.name], getattr(model_defaults, f.name)
        if isinstance(value, dict):  # a mapping's flag names the pairs that differ
            value = default if value == default else \
                ",".join(f"{k}={v:g}" for k, v in value.items() if default.get(k) != v)
        if value != default:
            parts.append(f"--{f.name.replace('_', '-')} {shlex.quote(str(value))}")
    if meta.get("dtype", "float32") != SHIPPED_SAVE_DTYPE:
        parts.append(f"--save-dtype {meta.get('dtype', 'float32')}")
    return " ".join(parts)


def bench_training_time() -> list[Row]:
    from mvae.checkpoint import read_metadata
    from mvae.evaluation.contrast import command_seconds, contrast_seconds

    path = checkpoint_path()
    if path is None:
        return [Row("4. training the default model to its quality bar", "no checkpoint", "—", None,
                    "train one with `python train.py --out checkpoints/default`")]
    meta = read_metadata(path)
    info = meta.get("info", {})
    # The whole command: the training state's wall clock, then train.py's last step, choosing the log-mel contrast.
    seconds, wall, tuned = info.get("train_seconds"), command_seconds(info), contrast_seconds(info)
    folder = relative(path)
    accuracy = info.get("metrics", {}).get("unimodal_accuracy", {})
    quality = ", ".join(f"{k} {100 * v:.1f} %" for k, v in accuracy.items())
    done, planned = len(info.get("history", [])), info.get("train_config", {}).get("epochs")
    epochs = (f"{done} epochs" if planned in (None, done)
              else f"{done} of the {planned} epochs asked for (stopped early)")
    device = info.get("device") or info.get("machine") or "not recorded"
    evaluated = sum(1 for h in info.get("history", []) if h.get("test"))
    target = f"≤ {TARGET_TRAIN_MINUTES:g} min"
    if wall is not None:
        result, met = f"{wall / 60:.1f} min", wall <= 60 * TARGET_TRAIN_MINUTES
        counted = (f"the time is the whole command's wall-clock (data loading, {seconds / 60:.1f} min of training "
                   f"steps and {evaluated} test evaluation(s)"
                   + (f", then {tuned / 60:.1f} min choosing the log-mel contrast" if tuned is not None else "") + ")")
    else:
        result, met = (f"{seconds / 60:.1f} min", None) if seconds is not None else ("not recorded", None)
        counted = "the time counts the training steps only, not data loading or evaluation"
    notes = (f"`{train_command(meta, folder)}`; {epochs}; {counted}; "
             f"test accuracy from one input: {quality or 'not recorded'}; "
             f"checkpoint {folder}; machine: {device}")
    return [Row("4. training the default model to its quality bar", result, target, met, notes),
            *cuda_epoch_row()]


TARGET_CUDA_EPOCH_S = 60.0
# The stored run closest to the recipe: its networks and 2 subsets decoded, from before clean targets (which cost
# no time a step).
RECIPE_VARIANT = "mlp decoder, 2 subsets"


def cuda_epoch_row() -> list[Row]:
    """The recipe's epoch on CUDA, from the speech screen's stored run (benchmarks/speech_variants.py), where a
    GPU was lent: this machine may have none, so the figure is read, not measured here."""
    import json

    from benchmarks.speech_variants import RESULTS

    if not RESULTS.is_file():
        return []
    stored = json.loads(RESULTS.read_text())
    runs = [r for r in stored.get("runs", []) if r.get("variant") == RECIPE_VARIANT and r.get("device") == "cuda"]
    if not runs:
        return []
    seconds = statistics.median(runs[0]["epoch_seconds"])
    notes = (f"variant '{RECIPE_VARIANT}' of the speech screen, run before clean targets were in the recipe; "
             f"median of {len(runs[0]['epoch_seconds'])} epochs of 60,000 pairs, test evaluation left out; "
             f"{stored['concurrent_runs']} runs shared the GPU and its CPUs at once, so one run alone is faster; "
             f"`{stored['command']}`; {stored['machine']}")
    return [Row("4b. one epoch on CUDA: the recipe's networks, 2 subsets decoded", f"{seconds:.0f} s",
                f"≤ {TARGET_CUDA_EPOCH_S:g} s", seconds <= TARGET_CUDA_EPOCH_S, notes)]


# -- the table ------------------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    mark = {True: "yes", False: "**no**", None: "—"}
    lines = ["| benchmark | result | target | met | notes |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.result} | {r.target or '—'} | {mark[r.met]} | {r.notes} |")
    return "\n".join(lines)


def row_group(line: str) -> str | None:
    """The benchmark number a table line belongs to ("2" for "| 2a. predict p50 ..."), None for other lines."""
    match = re.match(r"\| (\d+)[a-z]?'?\. ", line)
    return match.group(1) if match else None


def spliced(report: str, previous: str) -> str:
    """`report` for a README block that already holds a full table: the rows of the benchmarks re-run replace
    theirs, in their place, and every other row is kept; a line above the table says which rows are kept."""
    fresh = [line for line in report.splitlines() if row_group(line)]
    run = {row_group(line) for line in fresh}
    old_lines = previous.splitlines()
    kept, merged, placed = [], [], set()
    for line in old_lines:
        group = row_group(line)
        if group is None:
            continue
        if group not in run:
            kept.append(group)
            merged.append(line)
        elif group not in placed:
            merged += [f for f in fresh if row_group(f) == group]
            placed.add(group)
    merged += [f for f in fresh if row_group(f) not in placed]
    head = report.split("| benchmark |", 1)[0].rstrip("\n")
    carried = [m.group(1) for m in (re.search(r"the last full run: ([^)]*)\)", line) for line in old_lines) if m]
    dated = [line.removeprefix("Benchmarks ") for line in old_lines if line.startswith("Benchmarks (")]
    last_full = (carried or dated or ["not recorded"])[0]
    note = (f"Rows {', '.join(sorted(set(kept), key=int))} were measured by earlier runs (the last full run: "
            f"{last_full.strip('()')}); this run re-measured {', '.join(sorted(run, key=int))}.") if kept else ""
    return "\n\n".join(part for part in (head, note, "\n".join([table([]), *merged])) if part)


BENCHMARKS = {"throughput": bench_throughput, "latency": bench_latency, "app": bench_app, "venv": bench_venv,
              "training": lambda settings: bench_training_time()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: the same table within a minute")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (0: torch's default); the app's server keeps its own")
    parser.add_argument("--readme", help="also put the output into this Markdown file's <!-- bench:start/end --> block")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    header = f"{machine()}; benchmarks 1–2 ran with {torch.get_num_threads()} torch thread" \
             f"{'s' if torch.get_num_threads() != 1 else ''} (torch's default here: {default_threads})"
    rows: list[Row] = []
    for name in args.only or BENCHMARKS:
        try:
            rows += BENCHMARKS[name](settings)
        except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
            rows.append(Row(f"{name}", "failed", "", False, f"{type(exc).__name__}: {exc}"))
        print(f"[{time.perf_counter() - started:5.1f}s] {name} done", file=sys.stderr, flush=True)
    mode = "quick" if args.quick else "full"
    report = (f"Benchmarks ({mode} mode, {time.strftime('%Y-%m-%d %H:%M')}, {time.perf_counter() - started:.0f} s)\n\n"
              f"Machine: {header}\n\n{table(rows)}")
    print(report)
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        if args.only:  # the rows of the benchmarks not run stay as the last run that measured them left them
            report = spliced(report, read_block(text, "bench"))
        atomic_write(readme, replace_block(text, "bench", report).encode())
    return 1 if any(r.result == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
