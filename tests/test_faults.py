"""Fault injection: training killed mid-epoch and resumed, and damaged checkpoints.

Downloads that drop, fail their checksum or fill the disk are covered in test_download.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import mvae
from mvae.checkpoint import (MODEL_FILE, MODEL_JSON, STATE_FILE, load_training_state, read_metadata,
                             save_model, save_training_state)
from mvae.config import ModelConfig
from mvae.model import MVAE

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2  # killed in the last epoch, so the resumed run ends where the straight one does
STEPS = 100  # per epoch: long enough (about a second) that a kill lands inside it, not between epochs
# One thread: the result must not depend on how the machine splits a matrix product, and a
# single-threaded run is not slowed by other jobs on a busy machine.
MODEL_ARGS = ["--hidden", "32", "--latent-dim", "8", "--pairs-per-epoch", str(8 * STEPS), "--batch-size", "8",
              "--epochs", str(EPOCHS), "--speech-aug-copies", "0"]
TRAIN_ARGS = [*MODEL_ARGS, "--num-threads", "1"]
PROGRESS = re.compile(r"epoch (\d+)/\d+:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
RUN_TIMEOUT = 120


class TrainRun:
    """train.py in a subprocess whose progress bars are read as they are written."""

    def __init__(self, data_dir: Path, out: Path, *extra: str):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--out", str(out),
             *TRAIN_ARGS, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output = ""
        self.problem = ""  # set when the run could not be interrupted as asked
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._killer = None

    def _read(self):
        while chunk := self.proc.stdout.read1(4096):
            with self._lock:
                self.output += chunk.decode(errors="replace")

    def position(self) -> tuple[int, int, int] | None:
        """(epoch, batch, batches per epoch) of the latest progress bar update."""
        with self._lock:
            tail = self.output[-2000:]
        found = PROGRESS.findall(tail)
        return tuple(int(x) for x in found[-1]) if found else None

    def kill_mid_epoch(self, sig: int, epoch: int = 2) -> "TrainRun":
        """Sends `sig`, from a watcher thread, once the progress bar shows `epoch` started and far from its end."""
        def watch():
            deadline = time.monotonic() + RUN_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                where = self.position()
                if where and where[0] == epoch and 5 <= where[1] <= where[2] // 2:
                    self.proc.send_signal(sig)
                    return
                if where and (where[0] > epoch or (where[0] == epoch and where[1] > where[2] // 2)):
                    break
                time.sleep(0.005)
            self.problem = f"never saw epoch {epoch} early enough to interrupt it"
            self.proc.kill()

        self._killer = threading.Thread(target=watch, daemon=True)
        self._killer.start()
        return self

    def wait(self) -> int:
        try:
            code = self.proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"train.py hung; output:\n{self.output[-3000:]}")
        self._reader.join(5)
        if self._killer:
            self._killer.join(5)
        assert not self.problem, f"{self.problem}; output:\n{self.output[-3000:]}"
        return code


def history_without_times(folder: Path) -> list[dict]:
    history = read_metadata(folder)["info"]["history"]
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def same_result(a: Path, b: Path) -> None:
    """Bit-identical weights (their checksums) and identical metrics, epoch by epoch."""
    meta_a, meta_b = read_metadata(a), read_metadata(b)
    assert meta_a["sha256"] == meta_b["sha256"], "the weights differ from the uninterrupted run"
    assert history_without_times(a) == history_without_times(b)
    assert meta_a["info"]["metrics"] == meta_b["info"]["metrics"]


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    """The uninterrupted run and the two interrupted ones, started together to save wall time."""
    root = tmp_path_factory.mktemp("interrupted")
    started = {
        "straight": TrainRun(synthetic_data, root / "straight"),
        "sigterm": TrainRun(synthetic_data, root / "sigterm").kill_mid_epoch(signal.SIGTERM),
        "sigkill": TrainRun(synthetic_data, root / "sigkill").kill_mid_epoch(signal.SIGKILL),
    }
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()


def finished(run: TrainRun) -> Path:
    assert run.wait() == 0, run.output[-3000:]
    return run.out


@pytest.mark.timeout(300)
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(synthetic_data, runs):
    run = runs["sigterm"]
    assert run.wait() == 130, run.output[-3000:]
    assert "resume with --resume" in run.output and "Traceback" not in run.output

    # The state was saved mid-epoch, at the batch the signal was seen.
    state = load_training_state(run.out, *_fresh_training_objects())
    assert state["epoch"] == 1 and 0 < state["batch"] < STEPS, state["batch"]

    resumed = TrainRun(synthetic_data, run.out, "--resume")
    assert resumed.wait() == 0, resumed.output[-3000:]
    assert f"resuming at epoch 2, batch {state['batch']}" in resumed.output
    same_result(run.out, finished(runs["straight"]))


@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_keeps_the_last_checkpoint_and_resume_equals_an_uninterrupted_run(synthetic_data, runs):
    run = runs["sigkill"]
    assert run.wait() == -signal.SIGKILL

    # Nothing was saved after epoch 1; what is there is whole and loads. A hidden .tmp may stay behind
    # if the kill caught a write, but nothing half-written carries a checkpoint's name.
    folder = run.out
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert visible == sorted([MODEL_FILE, MODEL_JSON, STATE_FILE])
    assert all(p.name.endswith(".tmp") for p in folder.iterdir() if p.name.startswith("."))
    pipe = mvae.load(folder)
    assert len(pipe.metadata["info"]["history"]) == 1
    assert json.loads((folder / MODEL_JSON).read_text())["info"]["history"] == pipe.metadata["info"]["history"]
    state = load_training_state(folder, *_fresh_training_objects())
    assert (state["epoch"], state["batch"]) == (1, 0)

    resumed = TrainRun(synthetic_data, folder, "--resume")
    assert resumed.wait() == 0, resumed.output[-3000:]
    assert "resuming at epoch 2, batch 0" in resumed.output
    same_result(folder, finished(runs["straight"]))


def _fresh_training_objects():
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    return model, torch.optim.Adam(model.parameters()), torch.Generator()


# -- damaged checkpoints ----------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    save_model(tmp_path / "ckpt", MVAE(ModelConfig(hidden=16, latent_dim=4)), {"train_seconds": 1.0})
    return tmp_path / "ckpt"


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    elif how == "empty":
        data = bytearray()
    elif how == "flipped weight byte":
        data[-7] ^= 0x01
    elif how == "flipped header byte":
        data[12] ^= 0x20
    path.write_bytes(bytes(data))


HOW = ["truncated", "empty", "flipped weight byte", "flipped header byte"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("given", ["folder", "file", "environment"])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(checkpoint, monkeypatch, how, given):
    file = checkpoint / MODEL_FILE
    damage(file, how)
    if given == "environment":
        monkeypatch.setenv("MVAE_CHECKPOINT", str(checkpoint))
    with pytest.raises(mvae.CheckpointError) as info:
        mvae.load({"folder": checkpoint, "file": file, "environment": None}[given])
    message = str(info.value)
    assert str(file) in message and "damaged" in message
    assert "Re-download or retrain" in message


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(mvae.CheckpointError, match="train.py") as info:
        mvae.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


@pytest.mark.parametrize("how", ["truncated", "flipped weight byte"])
def test_resume_from_a_damaged_training_state_says_so_without_a_traceback(synthetic_data, tmp_path, capsys, how):
    sys.path.insert(0, str(ROOT))
    import train

    folder = tmp_path / "run"
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    save_training_state(folder, model, torch.optim.Adam(model.parameters()), torch.Generator(),
                        {"epoch": 1, "batch": 0, "history": []})
    damage(folder / STATE_FILE, how)
    # In this process, so without --num-threads, which would change the threads of every later test.
    assert train.main(["--data-dir", str(synthetic_data), "--out", str(folder), *MODEL_ARGS, "--resume",
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: The checkpoint {folder / STATE_FILE} is damaged" in err and "Re-download or retrain" in err
