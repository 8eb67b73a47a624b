"""Fault injection: training killed mid-epoch and resumed, and damaged checkpoints.

Downloads that drop, fail their checksum or fill the disk are covered in test_download.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
RUN_ARGS = ["--hidden", "32", "--latent-dim", "8", "--pairs-per-epoch", str(8 * STEPS), "--batch-size", "8",
              "--epochs", str(EPOCHS), "--speech-aug-copies", "0"]
TRAIN_ARGS = [*RUN_ARGS, "--num-threads", "1"]
PROGRESS = re.compile(r"epoch (\d+)/\d+:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
RUN_TIMEOUT = 120


class TrainRun:
    """train.py in a subprocess whose progress bars are read as they are written."""

    def __init__(self, data_dir: Path, out: Path, *extra: str):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--out", str(out),
             *TRAIN_ARGS, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # One thread from the start, data loading included (--num-threads acts only once it trains).
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
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
                # 0/N shows once the previous epoch is saved and the next one's first batch is under way.
                if where and where[0] == epoch and where[1] <= where[2] * 2 // 3:
                    self.proc.send_signal(sig)
                    return
                if where and (where[0] > epoch or (where[0] == epoch and where[1] > where[2] * 2 // 3)):
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


class Interrupted:
    """A run killed mid-epoch by `sig`; as soon as it stops, its folder is copied aside as the kill left
    it and a `--resume` run continues in the folder, so that several scenarios overlap in time."""

    def __init__(self, data_dir: Path, out: Path, sig: int):
        self.first = TrainRun(data_dir, out).kill_mid_epoch(sig)
        self.after_kill = out.with_name(out.name + "-as-killed")
        self.resumed: TrainRun | None = None
        self.code: int | None = None
        self.error: BaseException | None = None

        def go_on():
            try:
                self.code = self.first.wait()
                shutil.copytree(out, self.after_kill)
                self.resumed = TrainRun(data_dir, out, "--resume")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc

        self._thread = threading.Thread(target=go_on, daemon=True)
        self._thread.start()

    def killed(self) -> tuple[int, TrainRun]:
        self._thread.join(RUN_TIMEOUT)
        if self.error:
            raise self.error
        return self.code, self.first

    def resume_finished(self) -> TrainRun:
        self.killed()
        assert self.resumed is not None
        assert self.resumed.wait() == 0, self.resumed.output[-3000:]
        return self.resumed

    def stop(self):
        for run in (self.first, self.resumed):
            if run and run.proc.poll() is None:
                run.proc.kill()


@pytest.fixture(scope="module")
def runs(synthetic_data, tmp_path_factory):
    """The uninterrupted run and the two interrupted ones, started together to save wall time."""
    root = tmp_path_factory.mktemp("interrupted")
    started = {
        "straight": TrainRun(synthetic_data, root / "straight"),
        "sigterm": Interrupted(synthetic_data, root / "sigterm", signal.SIGTERM),
        "sigkill": Interrupted(synthetic_data, root / "sigkill", signal.SIGKILL),
    }
    yield started
    started["straight"].proc.kill()
    started["sigterm"].stop()
    started["sigkill"].stop()


def finished(run: TrainRun) -> Path:
    assert run.wait() == 0, run.output[-3000:]
    return run.out


@pytest.mark.timeout(300)
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(runs):
    scenario = runs["sigterm"]
    code, run = scenario.killed()
    assert code == 130, run.output[-3000:]
    assert "resume with --resume" in run.output and "Traceback" not in run.output

    # The state was saved mid-epoch, at the batch the signal was seen.
    state = load_training_state(scenario.after_kill, *_fresh_training_objects())
    assert state["epoch"] == 1 and 0 < state["batch"] < STEPS, state["batch"]

    resumed = scenario.resume_finished()
    assert f"resuming at epoch 2, batch {state['batch']}" in resumed.output
    same_result(resumed.out, finished(runs["straight"]))


@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_keeps_the_last_checkpoint_and_resume_equals_an_uninterrupted_run(runs):
    scenario = runs["sigkill"]
    code, run = scenario.killed()
    assert code == -signal.SIGKILL, run.output[-3000:]

    # Nothing was saved after epoch 1; what is there is whole and loads. A hidden .tmp may stay behind
    # if the kill caught a write, but nothing half-written carries a checkpoint's name.
    folder = scenario.after_kill
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert visible == sorted([MODEL_FILE, MODEL_JSON, STATE_FILE])
    assert all(p.name.endswith(".tmp") for p in folder.iterdir() if p.name.startswith("."))
    pipe = mvae.load(folder)
    assert len(pipe.metadata["info"]["history"]) == 1
    assert json.loads((folder / MODEL_JSON).read_text())["info"]["history"] == pipe.metadata["info"]["history"]
    state = load_training_state(folder, *_fresh_training_objects())
    assert (state["epoch"], state["batch"]) == (1, 0)

    resumed = scenario.resume_finished()
    assert "resuming at epoch 2, batch 0" in resumed.output
    same_result(resumed.out, finished(runs["straight"]))


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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs do; restored so that later tests are unaffected
    try:
        code = train.main(["--data-dir", str(synthetic_data), "--out", str(folder), *RUN_ARGS, "--resume",
                           "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: The checkpoint {folder / STATE_FILE} is damaged" in err and "Re-download or retrain" in err
