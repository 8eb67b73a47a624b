"""A fourth modality is one entry in the registry.

The test registers Latin digits (rendered here from a font at random sizes, slants and places) as a single
`register(Modality(...))`, writes a small synthetic set of them beside the other synthetic data, trains a tiny
model on all four modalities for a few steps with train.py, loads it in the lean runtime, predicts from the new
modality, generates it, and renders every page of the app with it present. Nothing outside this file names it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.helpers import ROOT, make_dataset, open_page, plain_model_flags

NEW = "latin"
PAGES = sorted(p.stem for p in (ROOT / "pages").glob("*.py"))
SOURCES = ("mvae", "webapp", "pages", "benchmarks", "space", "app.py", "train.py")


def latin_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 Latin digit, white on black, at a random size, slant and place."""
    canvas = Image.new("L", (56, 56), 0)
    font = ImageFont.load_default(size=int(rng.integers(26, 44)))
    ImageDraw.Draw(canvas).text((28 + rng.normal(0, 2), 28 + rng.normal(0, 2)), str(digit), fill=255, font=font,
                                anchor="mm")
    slant = rng.uniform(-0.35, 0.35)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, slant, -28 * slant, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)
    return np.asarray(canvas.resize((28, 28), Image.Resampling.LANCZOS), np.uint8)


def write_latin(root: Path, folder: str, per_class: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True, exist_ok=True)
    for stem, n in per_class.items():
        labels = np.repeat(np.arange(10), n).astype(np.uint8)
        rng.shuffle(labels)
        images = np.stack([latin_digit(int(d), rng) for d in labels])
        np.savez_compressed(root / folder / f"{stem}.npz", images=images, labels=labels)


@pytest.fixture(scope="module")
def fourth(tmp_path_factory, one_torch_thread):
    """The Latin entry registered for this module's tests, and a tiny model trained on all four modalities."""
    from mvae import registry

    spec = registry.register(registry.Modality(
        name=NEW, kind=registry.IMAGE, title="Latin", noun="Latin drawing", colour="#CC79A7", glyphs="0123456789",
        source=registry.ImageFiles(NEW, {"train": "train", "test": "test"})))
    try:
        data = make_dataset(tmp_path_factory.mktemp("data"), per_class_train=12, per_class_test=4)
        write_latin(data, spec.source.folder, {"train": 12, "test": 4})
        out = tmp_path_factory.mktemp("run") / "model"
        import train

        assert train.main(["--data-dir", str(data), "--out", str(out), *plain_model_flags(), "--epochs", "1",
                           "--pairs-per-epoch", "120", "--batch-size", "30", "--hidden", "16", "--latent-dim", "4",
                           "--speech-aug-copies", "0", "--num-threads", "1", "--no-progress", "--no-cache"]) == 0
        yield spec, out
    finally:
        registry.unregister(NEW)


def test_the_model_trained_with_it_holds_it_and_the_lean_runtime_predicts_from_it(fourth):
    import mvae

    spec, out = fourth
    pipe = mvae.load(out)
    assert NEW in pipe.modalities and len(pipe.modalities) == 4
    drawing = latin_digit(7, np.random.default_rng(1))
    pred = pipe.predict({NEW: drawing})
    assert 0 <= pred.label < 10
    assert pred.probs.shape == (10,) and abs(float(pred.probs.sum()) - 1) < 1e-4
    assert pred.inputs[NEW].shape == (28, 28)
    # Every image modality is drawn from the new one alone, and the new one is drawn when another is given.
    assert set(pred.images) == set(pipe.modalities) & set(mvae.registry.names(mvae.registry.IMAGE))
    from_other = pipe.predict({mvae.registry.names(mvae.registry.IMAGE)[0]: drawing})
    made = from_other.images[NEW]
    assert made.shape == (28, 28) and 0 <= made.min() and made.max() <= 1


def test_the_lean_runtime_generates_it_from_a_label(fourth):
    import mvae

    _, out = fourth
    made = mvae.load(out).generate(3, n=5, seed=0)
    images = made.images[NEW]
    assert images.shape == (5, 28, 28)
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
    assert float(np.std(images, axis=0).mean()) > 0  # five draws, not one image repeated


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_it_present(fourth, page, monkeypatch):
    _, out = fourth
    monkeypatch.setenv("MVAE_CHECKPOINT", str(out))
    at = open_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error if "Traceback" in str(e.value)]
    assert at.title


def test_no_file_but_this_one_names_it():
    named = re.compile(rf"\b{NEW}\b", re.IGNORECASE)
    found = []
    for source in SOURCES:
        path = ROOT / source
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            if named.search(file.read_text(encoding="utf-8")):
                found.append(str(file.relative_to(ROOT)))
    assert found == []
