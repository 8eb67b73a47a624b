"""What loading a checkpoint costs, for hostile files and for the largest model the loader accepts.

    python -m benchmarks.checkpoint_limits     # from the repository's root

Each file is read in a fresh interpreter by `mvae.load` (the lean runtime, what the app runs), by
`mvae.checkpoint.load_model` (torch) or by `python -m mvae.upgrade`'s main; a model that loads is also run
once at the largest batch a call decodes (`generate`, n = MAX_SAMPLES, after loading it). The table gives
the seconds the call took (after the imports and, for `generate`, the load) and the interpreter's peak RSS
(VmHWM, so numpy's and torch's allocations count; the imports alone are the first rows). A call still
running after CHILD_TIMEOUT_S is killed and shown as hung. The hostile model files of issue 17 are built by
tests/test_model_bounds.py, which holds each to 5 s and 1.5 GB. Linux only, for /proc/self/status.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mvae.checkpoint import pack, save_model, shape_model
from mvae.config import ModelConfig, to_dict
from mvae.errors import CheckpointError
from mvae.model.export import program
from mvae.model.model import MVAE
from mvae.runtime.model import size_program
from mvae.store import MAX_PARAMETERS, MODEL_FILE, atomic_write
from tests.test_checkpoint import edit, pack_v1
from tests.test_model_bounds import BOMBS, CASES

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 120  # a hung read (a named pipe, before the fix) is cut off here
READERS = ("mvae.load", "load_model", "upgrade")

CHILD = """
import contextlib, io, sys, time
reader, path = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
if reader == "mvae.load":
    import mvae
    call = mvae.load
elif reader == "generate":  # the heaviest decode a call makes: MAX_SAMPLES rows through every decoder
    import mvae
    from mvae.api_checks import MAX_SAMPLES
    pipe = mvae.load(sys.argv[2])
    call = lambda p: pipe.generate(0, n=MAX_SAMPLES)
elif reader == "load_model":
    from mvae.checkpoint import load_model as call
else:
    from mvae.upgrade import main
    call = lambda p: main([p])
from mvae.errors import CheckpointError
started = time.perf_counter()
outcome = "-"
if path:
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            result = call(path)
        outcome = f"exit {result}: {said.getvalue().strip()}" if reader == "upgrade" else \
            "decoded" if reader == "generate" else "loaded"
    except CheckpointError as exc:
        outcome = "CheckpointError: " + str(exc).split(" checkpoint: ", 1)[-1].split(" model: ", 1)[-1]
    except Exception as exc:
        outcome = f"{type(exc).__name__} (outside the contract): {exc}"
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(f"{seconds:.3f}|{peak:.0f}|{' '.join(outcome.split())}")
"""
SHOWN = 110  # characters of each outcome in the table


def largest_accepted() -> tuple[str, ModelConfig]:
    """The widest mlp whose parameters and program fit every bound the loader sets."""
    for hidden in range(4096, 0, -64):
        cfg = ModelConfig(hidden=hidden)
        model = shape_model(cfg)
        count = sum(t.numel() for t in model.state_dict().values())
        if count > MAX_PARAMETERS:
            continue
        try:
            figures = size_program(Path("largest"), cfg, program(model))
        except CheckpointError:
            continue
        return (f"largest accepted: mlp, hidden={hidden}, {count / 1e6:.1f} M parameters, "
                f"{figures['multiply_adds'] / 1e9:.1f} G multiply-adds, float32"), cfg
    raise RuntimeError("no mlp fits the bounds")


def hostile_files(tmp: Path) -> list[tuple[str, str, Path]]:
    """(case, reader, path) for every file measured."""
    model = MVAE(ModelConfig(hidden=16, latent_dim=4))
    # With a program, so that the lean runtime's own checks are measured, not its "no program" refusal.
    meta = {"model_config": to_dict(model.cfg), "dtype": "float32", "runtime": program(model), "info": {}}
    rows = []
    path = tmp / "hidden" / MODEL_FILE
    atomic_write(path, pack(model.state_dict(), dict(meta, model_config=dict(meta["model_config"], hidden=200_000))))
    rows += [("metadata says hidden=200000 (digest recomputed)", r, path) for r in READERS[:2]]
    path = save_model(tmp / "sparse", model, {})
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    with open(path, "r+b") as f:
        f.truncate(8 + n + 3 * 2**30)
    rows += [("3 GB sparse file", r, path) for r in READERS[:2]]
    tensors = dict(model.state_dict())
    tensors["encoders.farsi.head.bias"] = tensors["encoders.farsi.head.bias"].clone().fill_(float("nan"))
    path = tmp / "nan" / MODEL_FILE
    atomic_write(path, pack(tensors, meta))
    rows += [("NaN weights (digest recomputed)", r, path) for r in READERS[:2]]
    for i, (case, (make, _)) in enumerate(CASES.items()):
        folder = tmp / f"case{i}"
        folder.mkdir()
        path = make(folder)
        rows.append((case, "mvae.load", path))
        if case in BOMBS:
            rows.append((case, "upgrade", path))
    path = tmp / "v1" / MODEL_FILE
    atomic_write(path, pack_v1(model.state_dict(), {k: v for k, v in meta.items() if k != "runtime"}))
    edit(path, meta_fn=lambda m: m["model_config"]["audio"].update(griffin_lim_iters=200))
    rows.append(("format 1 with edited metadata", "upgrade", path))
    folder = tmp / "pipe"
    folder.mkdir()
    os.mkfifo(folder / MODEL_FILE)
    rows += [("a named pipe as model.safetensors", r, folder / MODEL_FILE) for r in ("mvae.load", "upgrade")]
    name, cfg = largest_accepted()
    torch.manual_seed(0)
    path = save_model(tmp / "largest", MVAE(cfg), {})
    rows += [(name, r, path) for r in (*READERS[:2], "generate")]
    rows += [("the shipped checkpoint", r, ROOT / "checkpoints" / "default" / MODEL_FILE)
             for r in (*READERS[:2], "generate")]
    return rows


def measure(reader: str, path: Path | None) -> tuple[str, str, str]:
    args = [sys.executable, "-c", CHILD, reader] + ([str(path)] if path else [])
    try:
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f">{CHILD_TIMEOUT_S}", "-", "hung: killed"
    seconds, peak, outcome = (out.stdout.strip() or f"-|-|{out.stderr.strip()[-SHOWN:]}").split("|", 2)
    return seconds, peak, outcome


def main(argv: list[str] | None = None) -> int:
    # No options: --help says what the benchmark does instead of starting it.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows = ["| file | read by | seconds | peak RSS (MB) | outcome |", "|---|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("nothing (imports only)", reader, None) for reader in READERS] + hostile_files(Path(tmp))
        for name, reader, path in cases:
            seconds, peak, outcome = measure(reader, path)
            outcome = outcome.replace(tmp, "…")
            rows.append(f"| {name} | {reader} | {seconds} | {peak} | {outcome[:SHOWN]} |")
            print(rows[-1], file=sys.stderr, flush=True)  # progress: the table follows on stdout
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
