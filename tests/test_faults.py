"""Fault injection: training killed mid-epoch and resumed, damaged checkpoints and training states,
damaged datasets, a full disk, and two trainers on one folder.

Downloads that drop, fail their checksum or fill the disk are covered in test_download.py.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mvae
from mvae.checkpoint import load_training_state, read_metadata, save_model, save_training_state
from mvae.config import ModelConfig
from mvae.model.model import MVAE
from mvae.store import MODEL_FILE, MODEL_JSON, STATE_FILE, model_path
from mvae.training.lock import LOCK_FILE
from tests.helpers import plain_model_flags

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2  # killed in the last epoch, so the resumed run ends where the straight one does
STEPS = 100  # per epoch: long enough (about a second) that a kill lands inside it, not between epochs
# The plain model of the dataclass defaults, not the shipped recipe: small enough for many short runs.
RUN_ARGS = [*plain_model_flags(), "--hidden", "32", "--latent-dim", "8", "--pairs-per-epoch", str(8 * STEPS),
            "--batch-size", "8", "--epochs", str(EPOCHS), "--speech-aug-copies", "0"]
# One thread: the result must not depend on how the machine splits a matrix product, and a
# single-threaded run is not slowed by other jobs on a busy machine.
TRAIN_ARGS = [*RUN_ARGS, "--num-threads", "1"]
PROGRESS = re.compile(r"epoch (\d+)/\d+:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
RUN_TIMEOUT = 300  # a guard against a hung run only: a loaded machine may be slow


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

    def kill_mid_epoch(self, sig: int, epoch: int = 2) -> TrainRun:
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
    from safetensors.torch import load_file

    # The file's digest also covers the metadata, which holds wall-clock times; compare the weights.
    meta_a, meta_b = read_metadata(a), read_metadata(b)
    weights_a, weights_b = load_file(model_path(a)), load_file(model_path(b))
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), \
        "the weights differ from the uninterrupted run"
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


@pytest.mark.slow
@pytest.mark.timeout(600)
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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_epoch_keeps_the_last_checkpoint_and_resume_equals_an_uninterrupted_run(runs):
    scenario = runs["sigkill"]
    code, run = scenario.killed()
    assert code == -signal.SIGKILL, run.output[-3000:]

    # Nothing was saved after epoch 1; what is there is whole and loads. A hidden .tmp may stay behind
    # if the kill caught a write, but nothing half-written carries a checkpoint's name. The lock file
    # stays too, unlocked, as the kernel dropped the lock with the process.
    folder = scenario.after_kill
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert visible == sorted([MODEL_FILE, MODEL_JSON, STATE_FILE])
    assert all(p.name.endswith(".tmp") or p.name == LOCK_FILE for p in folder.iterdir() if p.name.startswith("."))
    pipe = mvae.load(folder)
    assert len(pipe.metadata["info"]["history"]) == 1
    assert pipe.metadata["info"]["device"] == f"cpu ({os.cpu_count()} logical CPUs, 1 torch thread)"
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


def train_main(data_dir: Path, out: Path, *extra: str) -> int:
    """train.py's main in this process, on one thread as the subprocess runs use."""
    import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train.main(["--data-dir", str(data_dir), "--out", str(out), *RUN_ARGS, "--no-progress", *extra])
    finally:
        torch.set_num_threads(threads)  # restored so that later tests are unaffected


@pytest.mark.parametrize("how", ["truncated", "flipped weight byte"])
def test_resume_from_a_damaged_training_state_says_so_without_a_traceback(synthetic_data, tmp_path, capsys, how):
    folder = tmp_path / "run"
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    save_training_state(folder, model, torch.optim.Adam(model.parameters()), torch.Generator(),
                        {"epoch": 1, "batch": 0, "history": []})
    damage(folder / STATE_FILE, how)
    assert train_main(synthetic_data, folder, "--resume") == 2
    err = capsys.readouterr().err
    assert f"error: The checkpoint {folder / STATE_FILE} is damaged" in err and "Re-download or retrain" in err


# -- altered training states --------------------------------------------------------------------------

EPOCH = {"epoch": 1, "train": {"loss": 1.0}, "test": {"elbo": -1.0}, "seconds": 1.0}
ALTERED_STATES = {
    "epoch as text": {"epoch": "1", "batch": 0, "history": [EPOCH]},
    "negative epoch": {"epoch": -1, "batch": 0, "history": []},
    "no history": {"epoch": 1, "batch": 0},
    "history of numbers": {"epoch": 1, "batch": 0, "history": [5]},
    "history shorter than the epochs": {"epoch": 3, "batch": 0, "history": [EPOCH]},
    "entry without seconds": {"epoch": 1, "batch": 0, "history": [{k: v for k, v in EPOCH.items() if k != "seconds"}]},
    "batch beyond the epoch": {"epoch": 0, "batch": 10**9, "history": []},
    "batch as a list": {"epoch": 0, "batch": [1], "history": []},
    "totals that miscount": {"epoch": 1, "batch": 3, "history": [EPOCH], "partial": {"loss": 3.0}},
    "totals as text": {"epoch": 0, "batch": 2, "history": [], "partial": {"n": 2, "loss": "x"}},
    "wall-clock as text": {"epoch": 1, "batch": 0, "history": [EPOCH], "wall_seconds": "soon"},
}


def saved_state(folder: Path, state: dict) -> Path:
    model = MVAE(ModelConfig(hidden=32, latent_dim=8))
    return save_training_state(folder, model, torch.optim.Adam(model.parameters()), torch.Generator(), state)


@pytest.mark.parametrize("case", ALTERED_STATES)
def test_resume_from_an_altered_training_state_is_a_clear_error(synthetic_data, tmp_path, capsys, case):
    folder = tmp_path / "run"
    path = saved_state(folder, ALTERED_STATES[case])
    assert train_main(synthetic_data, folder, "--resume") == 2
    captured = capsys.readouterr()
    # The checkpoint reader refuses most alterations itself, in its own words; the trainer the rest.
    assert captured.err.startswith("error: ") and str(path) in captured.err and "damaged" in captured.err, captured.err
    assert ("new --out" in captured.err or "retrain" in captured.err) and "Traceback" not in captured.err
    assert "resuming" not in captured.out


def rewrite_metadata(path: Path, edit) -> None:
    """Edits the JSON metadata inside a safetensors header in place, as someone with a text editor would."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header["__metadata__"]["mvae"] = json.dumps(edit(json.loads(header["__metadata__"]["mvae"])))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])


RAW_EDITS = {
    "optimiser scalars as a list": lambda m: {**m, "optim_scalars": [1, 2]},
    "no optimiser scalars": lambda m: {k: v for k, v in m.items() if k != "optim_scalars"},
    "version as text": lambda m: {**m, "version": "2"},
    "metadata as a list": lambda m: [m],
    "epoch as a float": lambda m: {**m, "epoch": 0.5},
    "betas as text": lambda m: {**m, "param_groups": [{**g, "betas": "fast"} for g in m["param_groups"]]},
    "another weight decay": lambda m: {**m, "param_groups": [{**g, "weight_decay": 0.5} for g in m["param_groups"]]},
}


@pytest.mark.parametrize("case", RAW_EDITS)
def test_resume_from_hand_edited_state_metadata_is_a_clear_error(synthetic_data, tmp_path, capsys, case):
    folder = tmp_path / "run"
    path = saved_state(folder, {"epoch": 0, "batch": 0, "history": []})
    rewrite_metadata(path, RAW_EDITS[case])
    assert train_main(synthetic_data, folder, "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err, err
    assert "Traceback" not in err


def test_resume_without_a_saved_state_refuses_instead_of_starting_over(synthetic_data, tmp_path, capsys):
    assert train_main(synthetic_data, tmp_path / "empty", "--resume") == 2
    err = capsys.readouterr().err
    assert f"There is no training state to resume in {tmp_path / 'empty'}" in err
    assert not (tmp_path / "empty" / MODEL_FILE).exists()


# -- damaged datasets -------------------------------------------------------------------------------


def flip(path: Path, where: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_npz(path: Path, **arrays) -> None:
    with np.load(path) as archive:
        content = {**dict(archive), **arrays}
    path.unlink()
    np.savez_compressed(path, **content)


def labels_with_twelve(path: Path) -> None:
    with np.load(path) as archive:
        labels = archive["labels"].copy()
    labels[7] = 12
    rewrite_npz(path, labels=labels)


def silent(path: Path) -> None:
    sf.write(path, np.zeros(4000, np.float32), 8000, subtype="PCM_16")


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DATA_FAULTS = {
    # case: (file, damage, words the message must hold)
    "truncated train.npz": ("farsi/train.npz", lambda p: p.write_bytes(p.read_bytes()[:-300]), "is damaged"),
    "train.npz with a byte flipped in its data": ("farsi/train.npz", lambda p: flip(p, 0.5), "is damaged"),
    "train.npz with a byte flipped in its index": ("kannada/train.npz", lambda p: flip(p, 0.995), "is damaged"),
    "train.npz with a byte flipped in its first header": ("kannada/train.npz", lambda p: flip(p, 0.0005), "is damaged"),
    "random bytes as test.npz": ("kannada/test.npz", lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)),
                                 "is not an .npz archive"),
    "empty test.npz": ("farsi/test.npz", lambda p: p.write_bytes(b""), "is not an .npz archive"),
    "a label of 12": ("kannada/test.npz", labels_with_twelve, "outside 0-9, the first 12 at row 7"),
    "float images": ("farsi/train.npz", lambda p: rewrite_npz(p, images=np.zeros((10, 28, 28), np.float32),
                                                               labels=np.arange(10)), "expected uint8 (N, 28, 28)"),
    "images of the wrong size": ("farsi/test.npz", lambda p: rewrite_npz(p, images=np.zeros((10, 28, 27), np.uint8),
                                                                         labels=np.arange(10)), "(N, 28, 28)"),
    "fewer labels than images": ("kannada/train.npz", lambda p: rewrite_npz(p, labels=np.arange(10)),
                                 "one whole-number label per image"),
    "labels as Python objects": ("farsi/test.npz", lambda p: rewrite_npz(p, labels=np.array([1, "x"], object)),
                                 "Python objects"),
    "no labels": ("farsi/test.npz", lambda p: np.savez(p.with_suffix(""), images=np.zeros((3, 28, 28), np.uint8)),
                  "has no 'labels' array"),
    "corrupt FSDD WAV": ("fsdd/recordings/3_bob_2.wav", lambda p: p.write_bytes(b"RIFF" + bytes(range(200))),
                         "is damaged or is not audio"),
    "empty FSDD WAV": ("fsdd/recordings/7_alice_0.wav", lambda p: p.write_bytes(b""), "is empty"),
    "truncated FSDD WAV": ("fsdd/recordings/5_alice_4.wav", cut_short, "is truncated"),
    "silent FSDD WAV": ("fsdd/recordings/1_bob_3.wav", silent, "is silent"),
    "silent FSDD WAV for training": ("fsdd/recordings/8_alice_11.wav", silent, "is silent"),
}


@pytest.fixture
def dataset_copy(synthetic_data, tmp_path) -> Path:
    return Path(shutil.copytree(synthetic_data, tmp_path / "data"))


@pytest.mark.parametrize("case", DATA_FAULTS)
def test_a_damaged_dataset_stops_train_py_before_training_naming_the_file(dataset_copy, tmp_path, capsys,
                                                                         monkeypatch, case):
    import train

    name, spoil, words = DATA_FAULTS[case]
    spoil(dataset_copy / name)

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded for training before it was checked")

    monkeypatch.setattr(train, "load_training_data", no_loading)
    assert train_main(dataset_copy, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: The recording {dataset_copy / name} " if name.endswith(".wav")
                          else f"error: {dataset_copy / name} "), err
    assert words in err, err
    assert "--force" in err and "allow_pickle" not in err and "microphone" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists(), "nothing may be written for a run that cannot start"


def test_the_readers_the_evaluator_and_judges_use_refuse_damaged_files_too(dataset_copy):
    from mvae.config import AudioConfig
    from mvae.data.banks import image_bank, recording_bank
    from mvae.errors import DataError
    from mvae.signals.audio import AudioFrontEnd

    labels_with_twelve(dataset_copy / "kannada" / "dig.npz")
    with pytest.raises(DataError, match="outside 0-9"):
        image_bank(dataset_copy, "kannada", "extra")
    silent(dataset_copy / "fsdd" / "recordings" / "2_bob_0.wav")
    with pytest.raises(DataError, match=r"2_bob_0\.wav is silent"):
        recording_bank(dataset_copy, "speech", "test", AudioFrontEnd(AudioConfig()), progress=False)


def test_an_archive_that_claims_a_huge_array_is_refused_before_reading_it(dataset_copy, monkeypatch):
    from mvae.data import sources
    from mvae.errors import DataError

    monkeypatch.setattr(sources, "MAX_ARRAY_BYTES", 1000)  # the synthetic sets are small, the real cap is not
    with pytest.raises(DataError, match=r"declares a [\d,]+-byte 'images' array, more than a prepared set holds"):
        sources.load_images(dataset_copy, "farsi", "test")


def test_a_recording_the_front_end_cannot_use_is_named(dataset_copy):
    """A click in silence is loud enough to pass the up-front check but holds no word to train on."""
    from mvae.config import AudioConfig
    from mvae.data.banks import recording_bank
    from mvae.errors import DataError
    from mvae.signals.audio import AudioFrontEnd

    click = np.zeros(4000, np.float32)
    click[2000] = 0.5
    path = dataset_copy / "fsdd" / "recordings" / "4_alice_1.wav"
    sf.write(path, click, 8000, subtype="PCM_16")
    with pytest.raises(DataError) as info:
        recording_bank(dataset_copy, "speech", "test", AudioFrontEnd(AudioConfig()), progress=False)
    assert f"The recording {path} cannot be used" in str(info.value) and "--only fsdd --force" in str(info.value)


@pytest.mark.slow
def test_the_whole_real_dataset_passes_the_checks(real_data):
    from mvae import registry
    from mvae.data.checks import check_dataset

    check_dataset(real_data, registry.names(), ("train", "test"))


# -- a full disk --------------------------------------------------------------------------------------


class FullDisk:
    """Lets checkpoint writes through until the `nth` write of the file called `name`, which fails as
    on a full disk; every later write fails too, as it would until space is freed."""

    def __init__(self, monkeypatch, name: str, nth: int, code: int = errno.ENOSPC):
        from mvae import checkpoint

        self.real, self.name, self.nth, self.code = checkpoint.atomic_write, name, nth, code
        self.seen, self.full = 0, False
        monkeypatch.setattr(checkpoint, "atomic_write", self)

    def __call__(self, path, data):
        if Path(path).name == self.name:
            self.seen += 1
            self.full = self.full or self.seen == self.nth
        if self.full:
            raise OSError(self.code, os.strerror(self.code), str(path))
        self.real(path, data)


@pytest.fixture(scope="module")
def straight_run(synthetic_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight-in-process") / "run"
    assert train_main(synthetic_data, out) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("failing", [MODEL_FILE, STATE_FILE])
def test_a_full_disk_keeps_the_last_state_and_resume_continues_from_it(synthetic_data, tmp_path, capsys,
                                                                     monkeypatch, straight_run, failing):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(patch, failing, nth=2)  # the save after epoch 2
        assert train_main(synthetic_data, out) == 2
    err = capsys.readouterr().err
    assert f"error: Could not save the checkpoint in {out}: the disk is full." in err, err
    assert "The state saved after epoch 1 is intact" in err and f"--resume --out {out}" in err
    assert "Traceback" not in err

    # What is on disk is whole: the state of epoch 1 and a model that loads.
    assert load_training_state(out, *_fresh_training_objects())["epoch"] == 1
    assert len(mvae.load(out).metadata["info"]["history"]) == (2 if failing == STATE_FILE else 1)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    assert train_main(synthetic_data, out, "--resume") == 0
    assert "resuming at epoch 2, batch 0" in capsys.readouterr().out
    same_result(out, straight_run)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"),
                                         (errno.EDQUOT, "the disk quota is exceeded")])
def test_a_full_disk_at_the_first_save_says_nothing_was_kept(synthetic_data, tmp_path, capsys, monkeypatch, code,
                                                            words):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(patch, MODEL_FILE, nth=1, code=code)
        assert train_main(synthetic_data, out, "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert f"Could not save the checkpoint in {out}: {words}." in err and "Nothing of this run had been saved" in err
    assert "Traceback" not in err
    assert train_main(synthetic_data, out, "--resume") == 2
    assert "There is no training state to resume" in capsys.readouterr().err


def test_a_full_disk_on_a_stop_signal_is_a_clear_error(synthetic_data, tmp_path, monkeypatch):
    """The state saved on SIGTERM goes through the same check as the one saved after an epoch."""
    from mvae.config import TrainConfig
    from mvae.errors import CheckpointError
    from mvae.training.loop import Trainer, load_training_data

    cfg = TrainConfig(epochs=1, batch_size=8, pairs_per_epoch=80, speech_aug_copies=0)
    model_cfg = ModelConfig(hidden=32, latent_dim=8)
    trainer = Trainer(model_cfg, cfg, load_training_data(synthetic_data, model_cfg, cfg, progress=False),
                      tmp_path / "run", progress=False)
    steps = []

    def step_then_signal(batch, step):
        steps.append(step)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(batch, step)

    real_step = trainer._step
    monkeypatch.setattr(trainer, "_step", step_then_signal)
    FullDisk(monkeypatch, STATE_FILE, nth=1)
    with pytest.raises(CheckpointError, match="the disk is full. Nothing of this run had been saved yet"):
        trainer.fit()


# -- two trainers on one folder -----------------------------------------------------------------------


def test_a_second_trainer_on_a_locked_folder_refuses(synthetic_data, tmp_path, capsys):
    from mvae.training.lock import lock_output_dir

    out = tmp_path / "run"
    with lock_output_dir(out):
        assert train_main(synthetic_data, out) == 2
        err = capsys.readouterr().err
        assert f"error: Another training run (process {os.getpid()}) is writing to {out}." in err, err
        assert "another --out" in err
        assert [p.name for p in out.iterdir()] == [LOCK_FILE], "the refused run must write nothing"
    assert not (out / LOCK_FILE).exists()


def test_a_lock_file_left_by_a_crash_does_not_block(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\n")  # what a killed run leaves: the file, but no lock
    assert train_main(synthetic_data, out, "--epochs", "1") == 0
    assert (out / MODEL_FILE).is_file() and not (out / LOCK_FILE).exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_trainers_on_one_folder_the_second_refuses_and_the_first_goes_on(synthetic_data, tmp_path):
    out = tmp_path / "run"
    first = TrainRun(synthetic_data, out, "--epochs", "1000")  # runs until stopped below
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while first.position() is None and first.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.position() is not None, f"the first run never started training:\n{first.output[-3000:]}"
        second = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "--data-dir", str(synthetic_data), "--out", str(out),
             *TRAIN_ARGS, "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"error: Another training run (process {first.proc.pid}) is writing to {out}." in second.stderr
        assert "Traceback" not in second.stderr and "epoch" not in second.stdout
        assert first.proc.poll() is None, "the first run must go on"
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 130, first.output[-3000:]
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
