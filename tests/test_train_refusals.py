"""train.py refuses bad flags, config files, data sets and training states before any work: each refusal is
one line on stderr and exit status 2, with no traceback, nothing written, within REFUSAL_S seconds and
REFUSAL_BYTES of memory.

Every case runs `python train.py` in its own process, as a person would, and measures its wall-clock and its
peak RSS; a timeout turns a hang (a named pipe opened for reading) into a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mvae.checkpoint import pack, save_training_state
from mvae.config import ModelConfig
from mvae.store import MODEL_FILE, STATE_FILE, unpack
from tests.helpers import plain_model_flags

ROOT = Path(__file__).resolve().parent.parent
# The error contract of issue 17: a refusal within 5 s and 1.5 GB.
REFUSAL_S = 5.0
REFUSAL_BYTES = 1.5 * 2**30
# Only a guard against a hang: long enough that a slow refusal is reported as slow, not as hung.
HANG_S = 60
# The small plain model of test_faults.py, so a training state made here fits the flags.
RUN_ARGS = [*plain_model_flags(), "--hidden", "32", "--latent-dim", "8", "--pairs-per-epoch", "80",
            "--batch-size", "8", "--epochs", "2", "--speech-aug-copies", "0", "--no-progress"]
STATE_MODEL = ModelConfig(hidden=32, latent_dim=8)


class Refusal:
    """What one run of train.py left: its exit status, its stderr, its wall-clock and its peak RSS."""

    def __init__(self, code: int, err: str, out: str, seconds: float, peak_bytes: int):
        self.code, self.err, self.out, self.seconds, self.peak_bytes = code, err, out, seconds, peak_bytes

    def check(self, *words: str) -> None:
        """Exit 2, one line on stderr that holds `words`, no traceback, within the bounds."""
        assert self.code == 2, f"exit {self.code}; stderr:\n{self.err}\nstdout:\n{self.out}"
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one line:\n{self.err}"
        for word in words:
            assert word in lines[0], f"{word!r} not in {lines[0]!r}"
        # The figures, for `pytest tests/test_train_refusals.py -s` to show.
        peak = f"{self.peak_bytes / 2**20:.0f} MB" if self.peak_bytes else "in process"
        print(f"\nexit {self.code}, {self.seconds:.2f} s, {peak}: {lines[0]}")
        assert self.seconds < REFUSAL_S, f"refused after {self.seconds:.1f} s: {lines[0]}"
        assert self.peak_bytes < REFUSAL_BYTES, f"refused at a peak of {self.peak_bytes / 2**20:.0f} MB"


# Runs the command in its argv in a grandchild and writes the grandchild's peak RSS (KiB on Linux) to the file
# named by $PEAK_FILE. The grandchild is forked from this small launcher, not from the test process: Linux
# counts in a child's peak the memory of the process it was forked from, which for pytest with torch loaded
# is hundreds of MB that train.py never used.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
with open(os.environ["PEAK_FILE"], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def train_py(data_dir: Path, out: Path, *args: str) -> Refusal:
    """`python train.py` in a process of its own, timed, with its peak RSS; killed after HANG_S."""
    logs = out.parent / out.name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PEAK_FILE": f"{logs}.peak"}
    env.pop("MVAE_DATA_DIR", None)
    command = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--out", str(out), *args]
    with open(f"{logs}.stdout", "w+") as stdout, open(f"{logs}.stderr", "w+") as stderr:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *command], cwd=ROOT, env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)
        try:
            code = proc.wait(HANG_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stderr.seek(0)
            pytest.fail(f"train.py {' '.join(args)} hung for {HANG_S} s; stderr:\n{stderr.read()}")
        seconds = time.monotonic() - started
        stdout.seek(0)
        stderr.seek(0)
        peak = int(Path(f"{logs}.peak").read_text()) * (1 if sys.platform == "darwin" else 1024)
        return Refusal(code, stderr.read(), stdout.read(), seconds, peak)


def nothing_written(out: Path) -> None:
    assert not out.exists(), f"a refused run wrote {sorted(p.name for p in out.iterdir())}"


@pytest.fixture
def data(synthetic_data, tmp_path) -> Path:
    """A copy of the synthetic data set, for a case to spoil."""
    return Path(shutil.copytree(synthetic_data, tmp_path / "data"))


# -- flags and config files ---------------------------------------------------------------------------------

FLAG_CASES = {
    # flags: words the one line must hold
    "latent dim 0": (["--latent-dim", "0"], "--latent-dim 0: latent_dim is 0; it must lie between 1 and"),
    "hidden 0": (["--hidden", "0"], "--hidden 0: hidden is 0; it must lie between 1 and"),
    "negative epochs": (["--epochs", "-3"], "--epochs -3: epochs is -3; it must lie between 1 and"),
    "no epochs": (["--epochs", "0"], "--epochs 0: epochs is 0"),
    "batch size 0": (["--batch-size", "0"], "--batch-size 0: batch_size is 0"),
    "lr NaN": (["--lr", "nan"], "--lr nan: lr must be a finite number"),
    "lr 0 trains nothing": (["--lr", "0"], "lr is 0", "train nothing"),
    "lr past its range": (["--lr", "1e30"], "--lr 1e+30: lr is 1e+30; it must lie between 0 and 10"),
    "beta infinite": (["--beta", "inf"], "--beta inf: beta must be a finite number"),
    "negative style dim": (["--style-dim", "-1"], "--style-dim -1: style_dim is -1"),
    "unknown architecture": (["--architecture", "transformer"],
                             "--architecture transformer: architecture is 'transformer'; use one of"),
    "speech weight NaN": (["--recon-weights", "speech=nan"],
                          "--recon-weights speech=nan: recon_weights['speech'] must be a finite"),
    "weight of no modality": (["--recon-weights", "voice=2"], "--recon-weights voice=2: recon_weights may only name"),
    "weight without a name": (["--recon-weights", "2"], "expected NAME=NUMBER pairs"),
    "no pairs per epoch": (["--pairs-per-epoch", "0"], "--pairs-per-epoch 0: pairs_per_epoch is 0"),
    # argparse's own refusals, one line as well
    "a float for a whole number": (["--epochs", "1e3"], "argument --epochs: invalid int value: '1e3'"),
    "an unknown flag": (["--epoch", "3", "--frobnicate"], "unrecognized arguments: --frobnicate"),
}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_a_bad_flag_is_refused_in_one_line_before_any_work(synthetic_data, tmp_path, case):
    flags, *words = FLAG_CASES[case]
    run = train_py(synthetic_data, tmp_path / "run", *RUN_ARGS, *flags)
    run.check(*words)
    nothing_written(tmp_path / "run")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CONFIG_CASES = {
    # the file's text (None: no file): words the one line must hold
    "bad JSON": ('{"model": {"hidden": 0', "is not JSON this trainer reads (Expecting"),
    "missing file": (None, "cannot be read (No such file or directory)"),
    "a list": ("[1, 2]", "must hold a JSON object with a 'model' and/or a 'train' section, not list"),
    "an unknown section": ('{"modle": {}}', "not ['modle']"),
    "a section of the wrong type": ('{"train": [1]}', "TrainConfig must be an object of TrainConfig fields"),
    "an unknown field": ('{"model": {"hiden": 3}}', "unknown ModelConfig fields: ['hiden']"),
    "a value out of range": ('{"model": {"latent_dim": 0}}', "latent_dim is 0"),
    "no epochs": ('{"train": {"epochs": 0}}', "epochs is 0"),
    "a key given twice": ('{"train": {"lr": 0.001, "lr": 1e30}}', "gives the key 'lr' twice"),
    "nested too deep": ('{"model": ' + "[" * 10_000 + "]" * 10_000 + "}", "nests"),
    "labels the model cannot have": ('{"model": {"n_classes": 3}}', "n_classes is 3",
                                     "the 10 digits 0-9"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_bad_config_file_is_refused_in_one_line_naming_it(synthetic_data, tmp_path, case):
    text, *words = CONFIG_CASES[case]
    config = tmp_path / "run.json"
    if text is not None:
        config.write_text(text)
    run = train_py(synthetic_data, tmp_path / "run", *RUN_ARGS, "--config", str(config))
    run.check(*words)
    if case not in ("labels the model cannot have", "no epochs", "a value out of range"):
        assert f"--config {config}" in run.err
    nothing_written(tmp_path / "run")


def test_a_named_pipe_as_the_config_file_is_refused_not_waited_on(synthetic_data, tmp_path):
    config = tmp_path / "run.json"
    os.mkfifo(config)
    run = train_py(synthetic_data, tmp_path / "run", *RUN_ARGS, "--config", str(config))
    run.check(f"--config {config} cannot be read (it is a named pipe, not a regular file)")
    nothing_written(tmp_path / "run")


def test_a_file_as_the_output_folder_is_refused(synthetic_data, tmp_path):
    out = write(tmp_path / "run", "mine")
    run = train_py(synthetic_data, out, *RUN_ARGS)
    run.check(f"--out {out} is a file, not a folder")
    assert out.read_text() == "mine"


# -- data sets --------------------------------------------------------------------------------------------------


def relabel(path: Path, change) -> None:
    with np.load(path) as archive:
        images, labels = archive["images"], archive["labels"].copy()
    labels = change(labels)
    path.unlink()
    np.savez_compressed(path, images=images[: len(labels)], labels=labels)


def keep_one_of_digit(digit: int):
    def change(labels):
        rows = np.flatnonzero(labels == digit)
        return np.delete(labels, rows[1:])

    return change


def remove_recordings(folder: Path, pattern: str) -> None:
    for path in folder.glob(pattern):
        path.unlink()


DATA_CASES = {
    # (spoil the copy, words the one line must hold, and the file it names under the copy)
    "labels of a single class": (lambda d: relabel(d / "farsi/train.npz", np.zeros_like),
                                 "holds too few items of digit(s) 1 (0), 2 (0)", "farsi/train.npz"),
    "one item of a digit": (lambda d: relabel(d / "kannada/test.npz", keep_one_of_digit(3)),
                            "holds too few items of digit(s) 3 (1)", "kannada/test.npz"),
    "a label out of range": (lambda d: relabel(d / "kannada/train.npz", lambda lab: np.where(lab == 9, 10, lab)),
                             "label(s) outside 0-9", "kannada/train.npz"),
    "no images": (lambda d: relabel(d / "farsi/test.npz", lambda lab: lab[:0]), "holds no images", "farsi/test.npz"),
    "no recordings of a digit in the test split": (
        lambda d: remove_recordings(d / "fsdd/recordings", "4_*_[0-4].wav"),
        "The test split of the speech recordings", "fsdd/recordings"),
    "no recordings in the training split": (
        lambda d: [remove_recordings(d / "fsdd/recordings", f"*_{i}.wav") for i in range(5, 12)],
        "The train split of the speech recordings not found", "fsdd/recordings"),
    "a named pipe among the recordings": (lambda d: (d / "fsdd/recordings/2_bob_7.wav").unlink()
                                          or os.mkfifo(d / "fsdd/recordings/2_bob_7.wav"),
                                          "is not a regular file", "fsdd/recordings/2_bob_7.wav"),
    "a folder among the recordings": (lambda d: (d / "fsdd/recordings/3_alice_1.wav").unlink()
                                      or (d / "fsdd/recordings/3_alice_1.wav").mkdir(),
                                      "is not a regular file", "fsdd/recordings/3_alice_1.wav"),
    "a named pipe as an image set": (lambda d: (d / "kannada/test.npz").unlink() or os.mkfifo(d / "kannada/test.npz"),
                                     "cannot be read (it is a named pipe, not a regular file)", "kannada/test.npz"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_an_unusable_data_set_is_refused_up_front_naming_the_file(data, tmp_path, case):
    spoil, words, name = DATA_CASES[case]
    spoil(data)
    run = train_py(data, tmp_path / "run", *RUN_ARGS)
    run.check(words, str(data / name))
    nothing_written(tmp_path / "run")


# -- training states to resume ------------------------------------------------------------------------------


def resealed_state(folder: Path, edit) -> Path:
    """A training state for RUN_ARGS' model whose metadata `edit` changed, then resealed with a fresh digest:
    what anyone can do, since the digest is no signature."""
    model = MVAE_for_state()
    optimizer = torch.optim.Adam(model.parameters())
    path = save_training_state(folder, model, optimizer, torch.Generator(),
                               {"epoch": 1, "batch": 0, "history": [EPOCH], "train_config": TRAIN_CONFIG})
    tensors, meta = unpack(path)
    meta = edit(meta)
    path.write_bytes(pack({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, meta))
    unpack(path)  # the reseal verifies
    return path


def MVAE_for_state():
    from mvae.model.model import MVAE

    torch.manual_seed(0)
    return MVAE(STATE_MODEL)


EPOCH = {"epoch": 1, "train": {"loss": 1.0}, "test": {"elbo": -1.0}, "seconds": 1.0}
TRAIN_CONFIG = {"epochs": 2, "batch_size": 8, "lr": 1e-3}


def with_groups(meta, **changes):
    return {**meta, "param_groups": [{**g, **changes} for g in meta["param_groups"]]}


STATE_CASES = {
    # (edit of the metadata, extra flags, words the one line must hold)
    "the optimiser's lr 1e30": (lambda m: with_groups(m, lr=1e30), [],
                                "its optimiser's settings are out of range (lr is 1e+30; it must lie between"),
    "the optimiser's lr NaN": (lambda m: with_groups(m, lr=float("nan")), [],
                               "its optimiser's settings are out of range (lr must be a finite number"),
    "a negative weight decay": (lambda m: with_groups(m, weight_decay=-1.0), [],
                                "weight_decay is -1.0"),
    "the recorded lr 1e30": (lambda m: {**m, "train_config": {**TRAIN_CONFIG, "lr": 1e30}}, [],
                             "the run settings it records are out of range (lr is 1e+30"),
    "a recorded batch size of 0": (lambda m: {**m, "train_config": {**TRAIN_CONFIG, "batch_size": 0}}, [],
                                   "batch_size is 0"),
    "a finished run": (lambda m: m, ["--epochs", "1"], "already trained 1 epoch(s)", "resuming would train nothing"),
}


@pytest.mark.parametrize("case", STATE_CASES)
def test_a_resume_state_gets_the_ranges_the_flags_get(synthetic_data, tmp_path, case):
    edit, flags, *words = STATE_CASES[case]
    out = tmp_path / "run"
    path = resealed_state(out, edit)
    before = path.read_bytes()
    run = train_py(synthetic_data, out, *RUN_ARGS, "--resume", *flags)
    run.check(f"Cannot resume from the training state {path}", *words)
    assert "resuming" not in run.out
    assert path.read_bytes() == before, "the refused state was changed"
    assert sorted(p.name for p in out.iterdir()) == [STATE_FILE], "a refused resume wrote into its folder"


def test_an_unaltered_resealed_state_still_resumes(synthetic_data, tmp_path):
    """The cases above are refused for their values: the same state, resealed unchanged, is taken."""
    out = tmp_path / "run"
    resealed_state(out, lambda m: m)
    run = train_py(synthetic_data, out, *RUN_ARGS, "--resume", "--num-threads", "1")
    assert run.code == 0, run.err
    assert "resuming at epoch 2, batch 0" in run.out and (out / MODEL_FILE).is_file()


def test_the_trainer_checks_a_state_s_settings_itself(synthetic_data, tmp_path):
    """A library caller of Trainer.resume gets the same checks as train.py."""
    from mvae.config import TrainConfig
    from mvae.errors import CheckpointError
    from mvae.training.loop import Trainer, load_training_data

    cfg = TrainConfig(epochs=2, batch_size=8, pairs_per_epoch=80, speech_aug_copies=0)
    out = tmp_path / "run"
    resealed_state(out, lambda m: with_groups(m, lr=1e30))
    trainer = Trainer(STATE_MODEL, cfg, load_training_data(synthetic_data, STATE_MODEL, cfg, progress=False), out,
                      progress=False)
    with pytest.raises(CheckpointError, match=r"lr is 1e\+30"):
        trainer.resume()


# -- what needs torch: checked in this process, where torch is already imported ---------------------------------


def in_process(capsys, data_dir: Path, out: Path, *args: str) -> Refusal:
    import train

    started = time.monotonic()
    code = train.main(["--data-dir", str(data_dir), "--out", str(out), *RUN_ARGS, *args])
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    return Refusal(code, captured.err, captured.out, seconds, 0)


TORCH_CASES = {
    "a device torch does not know": (["--device", "tpu"], "--device 'tpu' is not a torch device"),
    "a model past the parameters mvae.load reads": (["--hidden", "4096", "--latent-dim", "1024"],
                                                    "parameters, more than the 50,000,000 mvae.load reads"),
    "a model past the work mvae.load allows": (["--architecture", "conv", "--conv-channels", "160"],
                                               "these settings make a model that mvae.load would refuse"),
}


@pytest.mark.parametrize("case", TORCH_CASES)
def test_settings_that_need_torch_to_judge_are_refused_before_loading_data(synthetic_data, tmp_path, capsys,
                                                                        monkeypatch, case):
    import train

    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded for training before the settings were checked")

    monkeypatch.setattr(train, "load_training_data", no_loading)
    flags, *words = TORCH_CASES[case]
    in_process(capsys, synthetic_data, tmp_path / "run", *flags).check(*words)
    nothing_written(tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_cuda_device_on_a_machine_without_one_is_refused(synthetic_data, tmp_path, capsys):
    run = in_process(capsys, synthetic_data, tmp_path / "run", "--device", "cuda")
    run.check("--device cuda is not available on this machine", "leave out --device")
    nothing_written(tmp_path / "run")


def test_the_refusal_cases_exist_for_every_case_of_the_issue():
    """Issue 17's list, each with its test here: a case dropped from the tables fails this test."""
    flags = {" ".join(f) for f, *_ in FLAG_CASES.values()}
    for wanted in ("--latent-dim 0", "--hidden 0", "--epochs -3", "--batch-size 0", "--lr nan", "--beta inf",
                   "--style-dim -1", "--architecture transformer"):
        assert wanted in flags
    assert {"bad JSON", "missing file"} <= set(CONFIG_CASES)
    assert {"labels of a single class", "a named pipe among the recordings"} <= set(DATA_CASES)
    assert "the optimiser's lr 1e30" in STATE_CASES and "the recorded lr 1e30" in STATE_CASES

