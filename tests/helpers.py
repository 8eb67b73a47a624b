"""Functions that several test files share (the fixtures are in conftest.py).

Synthetic data in the prepared format, predictions that may be refusals, the app's pages through AppTest,
and train.py flags for the small plain model the tests train.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
# Only catches a hung page: a run takes seconds, but the CI machine may be loaded many times over.
SCRIPT_TIMEOUT_S = 600


# -- a child interpreter without some packages ---------------------------------------------------------------
def refusing_imports(modules, reason: str) -> str:
    """Python source that, run first in a child interpreter, makes the top-level `modules` unimportable as an
    uninstalled package is (ModuleNotFoundError, and importlib.util.find_spec fails): a virtual environment
    made from a smaller requirements set, simulated within this one. The message reads "{reason} {name}"."""
    return textwrap.dedent(f"""
        import importlib.abc, sys
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {tuple(modules)!r}:
                    raise ModuleNotFoundError(f"{reason} {{name}}", name=name)
        sys.meta_path.insert(0, Refuse())
    """)


# -- synthetic data ------------------------------------------------------------------------------------------
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


# -- real data -----------------------------------------------------------------------------------------------
def real_recording(real_data: Path, name: str = "5_theo_1.wav") -> tuple[np.ndarray, int]:
    return sf.read(real_data / "fsdd" / "recordings" / name, dtype="float32")


# -- predictions and pages -----------------------------------------------------------------------------------
def outcome(pipe, inputs: dict):
    """The prediction, or the InputError; anything else propagates and fails the test."""
    import mvae

    try:
        return pipe.predict(inputs)
    except mvae.InputError as exc:
        return exc


def open_page(page: str):
    """An AppTest of the app, switched to pages/<page>.py and run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=SCRIPT_TIMEOUT_S)
    at.run()
    return at.switch_page(f"pages/{page}.py").run()


# -- train.py ------------------------------------------------------------------------------------------------
def plain_model_flags() -> list[str]:
    """train.py flags that undo the shipped recipe, back to the dataclass defaults: the small plain model
    (MLP, no styles, float32 weights) whose runs the tests can afford. Flags given after these win."""
    from mvae.config import SHIPPED_RECIPE, ModelConfig, TrainConfig

    flags = []
    for section, defaults in (("model", ModelConfig()), ("train", TrainConfig())):
        for name in SHIPPED_RECIPE[section]:
            value = getattr(defaults, name)
            shown = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            flags += [f"--{name.replace('_', '-')}", shown]
    return [*flags, "--save-dtype", "float32"]


# -- tiny models ----------------------------------------------------------------------------------------------
def tiny_model_and_batch(style_dim: int = 0, latent_dim: int = 4, batch_size: int = 5):
    """A small MVAE (8x8 log-mels, hidden 16) seeded alike every time, and a random batch of every modality."""
    import torch

    from mvae.config import AudioConfig, ModelConfig
    from mvae.model.model import MVAE

    torch.manual_seed(0)
    model = MVAE(ModelConfig(latent_dim=latent_dim, style_dim=style_dim, hidden=16,
                             audio=AudioConfig(n_mels=8, n_frames=8)))
    b = batch_size
    batch = {"farsi": torch.rand(b, 28, 28), "kannada": torch.rand(b, 28, 28), "speech": torch.randn(b, 8, 8),
             "label": torch.randint(0, 10, (b,))}
    return model, batch
