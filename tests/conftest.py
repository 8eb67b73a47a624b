"""Shared fixtures: a small synthetic dataset in the prepared format, and the real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REAL_DATA_ENV = "MVAE_DATA_DIR"
REQUIRE_ENV = "MVAE_REQUIRE_DATA"  # set by .ci/run: missing real data is then a failure, not a skip


def class_image(label: int, rng: np.random.Generator, script: str) -> np.ndarray:
    """A 28x28 uint8 digit stand-in whose class is easy to learn: a bar at a class-specific angle."""
    img = np.zeros((28, 28), np.float32)
    angle = np.pi * label / 10 + (0.3 if script == "kannada" else 0.0)
    centre = 13.5 + rng.normal(0, 0.7, 2)
    for t in np.linspace(-8, 8, 60):
        y, x = centre + t * np.array([np.sin(angle), np.cos(angle)])
        yy, xx = int(round(y)), int(round(x))
        img[max(yy - 1, 0):yy + 2, max(xx - 1, 0):xx + 2] = 1.0
    img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    return (img * 255).astype(np.uint8)


def tone(label: int, rng: np.random.Generator, rate: int = 8000, seconds: float = 0.4) -> np.ndarray:
    """A spoken-digit stand-in: a tone whose pitch names the class, in a little silence."""
    t = np.arange(int(rate * seconds)) / rate
    freq = 250.0 * (1 + label * 0.25) * (1 + rng.normal(0, 0.01))
    voiced = 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))
    pad = np.zeros(int(0.1 * rate))
    return np.concatenate([pad, voiced, pad]).astype(np.float32)


def make_dataset(root: Path, per_class_train: int = 30, per_class_test: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    splits = {"farsi": {"train": per_class_train, "test": per_class_test, "remaining": per_class_test},
              "kannada": {"train": per_class_train, "test": per_class_test, "dig": per_class_test}}
    for script, sizes in splits.items():
        (root / script).mkdir(parents=True, exist_ok=True)
        for stem, per_class in sizes.items():
            labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
            rng.shuffle(labels)
            images = np.stack([class_image(int(c), rng, script) for c in labels])
            np.savez_compressed(root / script / f"{stem}.npz", images=images, labels=labels)
    folder = root / "fsdd" / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for speaker in ("alice", "bob"):
            for index in range(12):  # 0-4 test, 5-9 validation, 10-11 fit
                sf.write(folder / f"{digit}_{speaker}_{index}.wav", tone(digit, rng), 8000, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = os.environ.get(REAL_DATA_ENV)
    present = path and (Path(path) / "farsi" / "test.npz").is_file() and (Path(path) / "fsdd" / "recordings").is_dir()
    if not present:
        message = (f"the real datasets are not available: set {REAL_DATA_ENV} to a folder prepared by "
                   "`python -m mvae.data.download`")
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message + f" ({REQUIRE_ENV} is set, so this is an error)")
        pytest.skip(message)
    return Path(path)


@pytest.fixture(scope="session")
def shipped_pipeline():
    import mvae

    return mvae.load()
