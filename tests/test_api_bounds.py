"""Every argument of the public API is checked: a bad one gives an InputError that says what to pass, and
the sizes a caller can ask for are bounded, so that no call, good or bad, takes more than 1.5 GB."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mvae
from mvae import api_checks
from mvae.config import ModelConfig
from mvae.inference import Pipeline
from mvae.model.model import MVAE
from mvae.runtime import ops
from tests.bad_cases import CALLS, CASES, MAX_RSS_MB

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return Pipeline(MVAE(ModelConfig(hidden=32, latent_dim=8)))


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_call(pipe, call):
    if call.refused is None:
        decoded = call.call(pipe)
        assert len(decoded.latents) >= 1 and np.isfinite(decoded.latents).all()
        assert decoded.probs.shape == (len(decoded.latents), 10)
        return
    with pytest.raises(mvae.InputError) as caught:
        call.call(pipe)
    assert re.search(call.refused, str(caught.value)), str(caught.value)


def test_the_largest_calls_give_what_they_promise(pipe):
    d = pipe.latent_dim
    assert len(pipe.generate(3, n=api_checks.MAX_SAMPLES).latents) == api_checks.MAX_SAMPLES
    values = np.linspace(-3, 3, api_checks.MAX_TRAVERSE_VALUES)
    grid = pipe.traverse(np.zeros(d), [0, d - 1], values)
    assert grid.latents.shape == (2 * len(values), d)
    np.testing.assert_allclose(grid.latents[len(values):, d - 1], values, rtol=1e-6)
    path = pipe.interpolate(np.zeros(d), np.ones(d), steps=api_checks.MAX_INTERPOLATE_STEPS)
    assert len(path.latents) == api_checks.MAX_INTERPOLATE_STEPS and path.latents[-1].tolist() == [1.0] * d


def test_arguments_are_read_as_the_numbers_they_are(pipe):
    """Whole floats, numpy scalars and arrays stand in for ints and lists, and mean the same."""
    d = pipe.latent_dim
    plain = pipe.generate(3, n=2, temperature=1, seed=5)
    other = pipe.generate(np.int64(3), n=2.0, temperature=np.float32(1.0), seed=np.uint8(5))
    np.testing.assert_array_equal(plain.latents, other.latents)
    a = pipe.traverse([0.0] * d, [1, 2], [-1, 1])
    b = pipe.traverse(torch.zeros(1, d), np.array([1, 2]), np.array([-1.0, 1.0]))
    np.testing.assert_array_equal(a.latents, b.latents)
    c = pipe.interpolate(np.zeros(d), np.ones(d), steps=np.int32(3))
    assert c.latents[1].tolist() == [0.5] * d
    assert pipe.predict({"label": 3.0}).label == pipe.predict({"label": np.int8(3)}).label


def test_the_bounds_leave_room_for_what_the_app_asks():
    """The latent page traverses up to 8 dimensions x 11 values and interpolates up to 12 steps."""
    assert 8 * 11 <= api_checks.MAX_SAMPLES and 11 <= api_checks.MAX_TRAVERSE_VALUES
    assert 12 <= api_checks.MAX_INTERPOLATE_STEPS <= api_checks.MAX_SAMPLES
    assert api_checks.MAX_TRAVERSE_VALUES <= api_checks.MAX_SAMPLES


# -- memory: every case in one child process, measured by the OS -------------------------------------------------
@pytest.fixture(scope="module")
def measured() -> list[dict]:
    """Runs tests/bad_cases.py against the shipped checkpoint in a child process: one row per case with its
    outcome and the process's peak RSS once it was done (torch's allocations count, unlike tracemalloc's)."""
    proc = subprocess.run([sys.executable, "-m", "tests.bad_cases"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_every_case_stays_under_the_memory_bound(measured):
    baseline, *rows = measured
    assert sorted(r["case"] for r in rows) == sorted([c.name for c in CASES] + [c.name for c in CALLS])
    failed = [r for r in rows if r["outcome"] not in ("result", "InputError")]
    assert not failed, failed
    over = [r for r in rows if r["peak_rss_mb"] > MAX_RSS_MB]
    assert not over, (f"the first case to take the process past {MAX_RSS_MB} MB: {over[0]} "
                      f"(after imports and the model: {baseline['peak_rss_mb']} MB)")
    # The bound must leave the cases room: imports and the model alone take well under it.
    assert baseline["peak_rss_mb"] < MAX_RSS_MB - 500, baseline


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_peak_rss_sees_torch_allocations():
    """The measure used above counts memory that torch allocates, which tracemalloc does not see."""
    code = ("import torch; from tests.bad_cases import peak_rss_mb; before = peak_rss_mb(); "
            "x = torch.ones(2**28); print(before, peak_rss_mb())")  # 1 GiB of float32
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(float, out.stdout.split())
    assert after >= 1024 and after - before > 512, (before, after)


# -- no network ever sees more than MAX_SAMPLES rows ------------------------------------------------------------
def test_no_network_is_given_more_than_max_samples_rows(monkeypatch):
    """Model files are bounded for batches of MAX_SAMPLES (mvae.runtime), so every facade path must decode
    at most that many rows at once; dimension_effects decodes 2 x latent size rows and so runs in chunks.
    MAX_SAMPLES is lowered to 16 here, below the shipped model's 2 x 64, so that the chunking is exercised."""
    pipe, small = mvae.load(), 16
    d, seen = pipe.latent_dim, []
    reference = pipe.dimension_effects(np.zeros(d), "farsi")
    run = ops.run  # every network of the lean runtime runs through it

    def counted(steps, x):
        seen.append(len(x))
        return run(steps, x)

    monkeypatch.setattr(ops, "run", counted)
    monkeypatch.setattr(api_checks, "MAX_SAMPLES", small)
    assert 2 * d > small
    effects = pipe.dimension_effects(np.zeros(d), "farsi")
    np.testing.assert_allclose(effects, reference, rtol=1e-5, atol=1e-7)  # the same answer, in chunks
    pipe.generate(3, n=small)
    pipe.traverse(np.zeros(d), [0, 1], np.linspace(-3, 3, small // 2))
    pipe.interpolate(np.zeros(d), np.ones(d), steps=small)
    pipe.restyle(np.zeros(d), n=small)
    pipe.decode(np.zeros((small, d)))
    pipe.predict({"kannada": np.eye(28, dtype=np.uint8) * 255})
    assert seen and max(seen) <= small, max(seen)


# -- a model that overflows is the model's fault, not the caller's ---------------------------------------------
def overflowing(network: str, decoder: bool = False) -> mvae.Pipeline:
    """The shipped model with the first weights of one network as a float16 file would hold them after
    overflowing: scaled past float16's 65504, they become infinite."""
    pipe = mvae.load()
    steps = (pipe.model.decoders if decoder else pipe.model.encoders)[network]
    tensors = next(s["tensors"] for s in steps if "weight" in s.get("tensors", {}))
    with np.errstate(over="ignore"):  # the overflow is the point
        tensors["weight"] = (tensors["weight"] * np.float32(1e6)).astype(np.float16).astype(np.float32)
    assert not np.isfinite(tensors["weight"]).all()
    return pipe


MODEL_FAULT = r"The model file .*model\.safetensors produced NaN or infinite values .* from finite inputs.*" \
              r"Download the checkpoint again or retrain it"


def test_an_overflowing_encoder_is_blamed_on_the_model_file():
    pipe = overflowing("kannada")
    with pytest.raises(mvae.CheckpointError, match=MODEL_FAULT):
        pipe.predict({"kannada": np.eye(28, dtype=np.uint8) * 255})
    with pytest.raises(mvae.InputError, match="NaN or infinite values; pixels must be finite"):
        pipe.predict({"kannada": np.full((28, 28), np.nan)})  # the user's own NaN is still the user's


def test_an_overflowing_decoder_is_blamed_on_the_model_file():
    pipe = overflowing("farsi", decoder=True)
    d = pipe.latent_dim
    for call in (lambda: pipe.generate(3, n=2), lambda: pipe.decode(np.zeros(d)),
                 lambda: pipe.traverse(np.zeros(d), [0], [1.0]), lambda: pipe.interpolate(np.zeros(d), np.ones(d)),
                 lambda: pipe.restyle(np.zeros(d), n=2), lambda: pipe.dimension_effects(np.zeros(d), "farsi"),
                 lambda: pipe.predict({"label": 3})):
        with pytest.raises(mvae.CheckpointError, match=MODEL_FAULT):
            call()
    with pytest.raises(mvae.InputError, match="NaN or infinite values in the latents; give finite numbers"):
        pipe.decode(np.full(d, np.nan))
