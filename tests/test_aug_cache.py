"""Silent minutes (issue 19): train.py announces each phase without progress bars, keeps the precomputed
speech banks in a cache keyed by the recordings and the settings, and makes no more augmented copies than
a run can draw. Whether a bank was made or read is told by counting the calls that make one, not by time."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mvae.config import AudioConfig
from mvae.data import banks
from mvae.data.cache import CACHE_ENV, MAX_CACHED_BANKS, SUBFOLDER, BankCache, default_cache_dir
from mvae.data.sources import recordings
from mvae.signals.audio import AudioFrontEnd
from tests.helpers import make_dataset, plain_model_flags

LIMIT = 10  # recordings per bank: every class once, a second or two with a copy of each


@pytest.fixture
def data(tmp_path) -> Path:
    """A dataset of this test's own, since some tests change its files."""
    return make_dataset(tmp_path / "data", per_class_train=2, per_class_test=2)


@pytest.fixture
def made(monkeypatch) -> list:
    """Records each time a speech bank is made rather than read."""
    calls = []
    real = banks._speech_waves

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(banks, "_speech_waves", counted)
    return calls


def bank(data: Path, cache: BankCache, audio: AudioConfig | None = None, copies: int = 1, strength: float = 1.0,
         seed: int = 0):
    return banks.recording_bank(data, "speech", "train", AudioFrontEnd(audio or AudioConfig()), copies, strength,
                                seed, progress=False, limit=LIMIT, cache=cache)


def cache_in(folder: Path, lines: list) -> BankCache:
    return BankCache(folder, lines.append)


def test_warped_targets_are_cached_with_their_bank_under_a_key_of_their_own(data, tmp_path, made):
    front_end = AudioFrontEnd(AudioConfig())
    cache = cache_in(tmp_path / "cache", [])

    def warped():
        return banks.recording_bank(data, "speech", "train", front_end, 1, progress=False, limit=LIMIT,
                                    cache=cache, warped_targets=True)

    plain = bank(data, cache)
    first = warped()
    assert len(made) == 2, "a bank with targets is not the bank without them"
    second = warped()
    assert len(made) == 2, "the second bank with targets should have been read, not made"
    assert second.targets is not None and torch.equal(first.targets, second.targets)
    assert torch.equal(first.items, second.items) and torch.equal(first.items, plain.items)
    assert bank(data, cache).targets is None and len(made) == 2, "the plain bank is still cached as it was"


def test_a_second_bank_is_read_from_the_cache_and_equals_the_first(data, tmp_path, made):
    lines = []
    first = bank(data, cache_in(tmp_path / "cache", lines))
    assert len(made) == 1 and any("precomputing" in line for line in lines), lines
    lines.clear()
    second = bank(data, cache_in(tmp_path / "cache", lines))
    assert len(made) == 1, "the second bank should have been read, not made"
    assert any("read from the cache" in line for line in lines), lines
    assert torch.equal(first.items, second.items) and np.array_equal(first.labels, second.labels)
    assert len(first.labels) == 2 * LIMIT  # each recording and its one copy


@pytest.mark.parametrize("change", ["seed", "copies", "strength", "audio", "a recording rewritten",
                                    "a recording touched"])
def test_a_changed_setting_or_recording_misses_the_cache(data, tmp_path, made, change):
    cache = cache_in(tmp_path / "cache", [])
    bank(data, cache)
    kwargs = {}
    if change == "seed":
        kwargs["seed"] = 1
    elif change == "copies":
        kwargs["copies"] = 2
    elif change == "strength":
        kwargs["strength"] = 0.5
    elif change == "audio":
        kwargs["audio"] = replace(AudioConfig(), aug_pitch_semitones=1.0)
    else:
        used = recordings(data, "speech", "train")[0].path
        if change == "a recording rewritten":
            used.write_bytes(used.read_bytes() + b"\0\0")  # one more sample: another size
        else:
            stat = used.stat()
            os.utime(used, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    bank(data, cache, **kwargs)
    assert len(made) == 2, f"{change}: the cached bank was used though it was made otherwise"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "an object array", "another shape", "other labels",
                                    "a NaN"])
def test_a_damaged_cache_file_is_a_miss_and_is_replaced(data, tmp_path, made, damage):
    lines = []
    cache = cache_in(tmp_path / "cache", lines)
    first = bank(data, cache)
    (path,) = (tmp_path / "cache" / SUBFOLDER).iterdir()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        with np.load(path) as stored:
            key, items, labels = stored["key"], stored["items"], stored["labels"]
        if damage == "an object array":  # what a pickle would need: never loaded
            items = np.array([object()] * len(labels), dtype=object)
        elif damage == "other labels":
            labels = (labels + 1) % 10
        elif damage == "a NaN":
            items[0, 0, 0] = np.nan
        else:
            items = items[:, :, :-1]
        with open(path, "wb") as f:
            np.savez(f, key=key, items=items, labels=labels)
    lines.clear()
    again = bank(data, cache)
    assert len(made) == 2 and torch.equal(first.items, again.items)
    assert any("making it again" in line for line in lines), lines
    bank(data, cache)
    assert len(made) == 2, "the damaged file should have been replaced by a good one"


def test_the_cache_keeps_the_newest_banks_and_only_its_own_files(data, tmp_path, made):
    folder = tmp_path / "cache"
    (folder / SUBFOLDER).mkdir(parents=True)
    foreign = folder / SUBFOLDER / "notes.npz"
    foreign.write_bytes(b"someone else's")
    for seed in range(MAX_CACHED_BANKS + 1):
        bank(data, cache_in(folder, []), seed=seed)
    kept = sorted(p.name for p in (folder / SUBFOLDER).iterdir())
    assert len(kept) == MAX_CACHED_BANKS + 1 and "notes.npz" in kept
    bank(data, cache_in(folder, []), seed=MAX_CACHED_BANKS)
    assert len(made) == MAX_CACHED_BANKS + 1, "the newest bank should still be cached"


def test_without_a_folder_nothing_is_kept_but_the_making_is_announced(data, tmp_path, made):
    lines = []
    bank(data, BankCache(None, lines.append))
    bank(data, BankCache(None, lines.append))
    assert len(made) == 2 and sum("precomputing" in line for line in lines) == 2


def test_the_cache_folder_is_the_users_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mvae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "mvae"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize(("asked", "draws", "recordings", "used"), [
    (4, 1_024, 2_700, 0),  # the run: each recording comes up less than once
    (4, 480_000, 2_700, 4),  # the shipped recipe: 8 epochs of 60,000 pairs
    (4, 5_400, 2_700, 1),
    (0, 480_000, 2_700, 0),
])
def test_a_run_makes_no_more_copies_than_it_can_draw(asked, draws, recordings, used):
    assert banks.useful_copies(asked, draws, recordings) == used


def test_train_help_says_where_the_cache_is(capsys, monkeypatch):
    import train

    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cache-dir CACHE_DIR" in text and f"${CACHE_ENV}" in text and "~/.cache/mvae" in text
    assert "--no-cache" in text


PHASES = ("loading data", "speech train: ", "precomputing", "speech test: ", "training: ", "evaluating",
          "writing the checkpoint")


@pytest.mark.slow
def test_train_py_announces_each_phase_without_progress_bars_and_a_second_run_reads_the_cache(
        data, tmp_path, made, capsys):
    import train

    def run(out: str) -> str:
        args = ["--data-dir", str(data), "--out", str(tmp_path / out), *plain_model_flags(), "--epochs", "1",
                "--pairs-per-epoch", "420", "--batch-size", "60", "--hidden", "16", "--latent-dim", "4",
                "--speech-aug-copies", "4", "--num-threads", "1", "--no-progress",
                "--cache-dir", str(tmp_path / "cache")]
        assert train.main(args) == 0
        return capsys.readouterr().out

    first = run("one")
    for phase in PHASES:
        assert phase in first, (phase, first)
    # 420 pairs from 140 training recordings: each comes up 3 times, so 2 copies of each are made, not 4.
    assert "speech train: 2 augmented copies of each recording, not 4" in first
    assert len(made) == 2  # the train and the test split
    second = run("two")
    assert len(made) == 2 and second.count("read from the cache") == 2 and "precomputing" not in second
