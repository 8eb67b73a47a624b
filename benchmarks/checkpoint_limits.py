"""What loading a checkpoint costs, for hostile files and for the largest model the loader accepts.

    python -m benchmarks.checkpoint_limits     # from the repository's root

Each file is loaded by `mvae.checkpoint.load_model` in a fresh interpreter; the table gives the seconds
the load took (after the import) and the interpreter's peak RSS (VmHWM, so torch's allocations count, and
the import alone is the first row). Linux only, for /proc/self/status.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from mvae.checkpoint import pack, save_model, shape_model
from mvae.config import ModelConfig, to_dict
from mvae.model.model import MVAE
from mvae.store import MAX_PARAMETERS, MODEL_FILE, atomic_write

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys, time
started = time.perf_counter()
from mvae.checkpoint import load_model
from mvae.errors import CheckpointError
started = time.perf_counter()
outcome = "loaded" if len(sys.argv) > 1 else "-"
if len(sys.argv) > 1:
    try:
        load_model(sys.argv[1])
    except CheckpointError as exc:
        outcome = "CheckpointError: " + str(exc).split(": ", 1)[-1][:70]
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(f"{seconds:.3f}|{peak:.0f}|{outcome}")
"""


def hostile_files(tmp: Path) -> dict[str, Path]:
    model = MVAE(ModelConfig(hidden=16, latent_dim=4))
    meta = {"model_config": to_dict(model.cfg), "dtype": "float32", "info": {}}
    files = {}
    path = tmp / "hidden" / MODEL_FILE
    atomic_write(path, pack(model.state_dict(), dict(meta, model_config=dict(meta["model_config"], hidden=200_000))))
    files["metadata says hidden=200000 (digest recomputed)"] = path
    path = save_model(tmp / "sparse", model, {})
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    with open(path, "r+b") as f:
        f.truncate(8 + n + 3 * 2**30)
    files["3 GB sparse file"] = path
    tensors = dict(model.state_dict())
    tensors["encoders.farsi.head.bias"] = tensors["encoders.farsi.head.bias"].clone().fill_(float("nan"))
    path = tmp / "nan" / MODEL_FILE
    atomic_write(path, pack(tensors, meta))
    files["NaN weights (digest recomputed)"] = path
    for hidden in range(4096, 0, -64):
        cfg = ModelConfig(hidden=hidden)
        count = sum(t.numel() for t in shape_model(cfg).state_dict().values())
        if count <= MAX_PARAMETERS:
            break
    files[f"largest accepted: mlp, hidden={hidden}, {count / 1e6:.1f} M parameters, float32"] = \
        save_model(tmp / "largest", MVAE(cfg), {})
    files["the shipped checkpoint"] = ROOT / "checkpoints" / "default" / MODEL_FILE
    return files


def main() -> int:
    rows = ["| file | load time (s) | peak RSS (MB) | outcome |", "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"nothing (import only)": None, **hostile_files(Path(tmp))}
        for name, path in cases.items():
            args = [sys.executable, "-c", CHILD] + ([str(path)] if path else [])
            out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
            seconds, peak, outcome = (out.stdout.strip() or f"-|-|{out.stderr.strip()[-70:]}").split("|", 2)
            rows.append(f"| {name} | {seconds} | {peak} | {outcome} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
