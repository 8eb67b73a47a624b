"""The lean runtime against the torch runtime it replaced, side by side in one run.

- `predict` latency: the facade on the lean runtime (numpy), against the same facade on the torch model
  with the torchaudio front end (resampling, log-mel, Griffin-Lim), as the app ran before; the two are
  interleaved call by call.
- Start: a fresh interpreter that imports `mvae`, loads the default checkpoint and makes the first two
  predictions (a canvas, a recording); wall time and peak RSS (VmHWM), for each runtime.
- The size of a fresh virtual environment made from requirements.txt (pip's own cache makes it quick).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

from mvae import registry
from mvae.signals.audio import AudioFrontEnd

ROOT = Path(__file__).resolve().parent.parent
TARGET_START_S = 2.0
TARGET_START_RSS_MB = 400.0
TARGET_VENV_MB = 700.0


class TorchFrontEnd(AudioFrontEnd):
    """The front end as it was before the lean runtime: torchaudio's resampler, log-mel and Griffin-Lim."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=cfg.f_min, f_max=cfg.f_max, power=2.0)
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sample_rate, f_min=cfg.f_min,
            f_max=cfg.f_max, driver="gelsd")
        self.gl = torchaudio.transforms.GriffinLim(n_fft=cfg.n_fft, hop_length=cfg.hop_length, power=2.0,
                                                   n_iter=cfg.griffin_lim_iters, rand_init=False)

    def to_mono(self, samples, rate):
        from fractions import Fraction

        from mvae.signals import resampling as audio

        wave = np.asarray(samples, np.float32)
        wave = wave.mean(axis=1) if wave.ndim == 2 else wave
        frac = audio.resample_ratio(Fraction(self.cfg.sample_rate, rate))
        x = torch.from_numpy(np.ascontiguousarray(wave - wave.mean()))
        if frac != 1:
            x = torchaudio.functional.resample(x, frac.denominator, frac.numerator)
        return x.numpy()

    def log_mel(self, wave):
        with torch.no_grad():
            return torch.log(self.mel(torch.as_tensor(wave, dtype=torch.float32)) + self.cfg.log_floor).numpy()

    def waveform_from_log_mel(self, log_mel):
        m = torch.as_tensor(log_mel, dtype=torch.float32)
        power = (torch.exp(m.clamp(max=30.0)) - self.cfg.log_floor).clamp(min=0)
        with torch.no_grad():
            wave = self.gl(self.inverse_mel(power))
        peak = wave.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)
        return (wave * (self.cfg.target_peak / peak)).numpy().astype(np.float32)


class TorchRuntime:
    """The torch MVAE behind the lean runtime's interface: numpy in, numpy out."""

    def __init__(self, model):
        self.model = model.eval()
        self.cfg, self.names = model.cfg, model.names
        self.input_names, self.style_names = model.input_names, model.style_names
        self.full_latent_dim = model.full_latent_dim

    def latent_layout(self):
        return self.model.latent_layout()

    @torch.no_grad()
    def encode(self, inputs):
        return self.model.encode({n: torch.as_tensor(v) for n, v in inputs.items()})

    @torch.no_grad()
    def full_posterior(self, inputs):
        if isinstance(inputs, dict):
            inputs = self.encode(inputs)
        mu, logvar = self.model.full_posterior(inputs)
        return mu.numpy(), logvar.numpy()

    @torch.no_grad()
    def outputs(self, latents, names=None):
        return {n: v.numpy() for n, v in self.model.outputs(torch.as_tensor(latents), names).items()}


def torch_pipeline(path):
    """The facade as it ran before: the torch model and the torchaudio front end."""
    from mvae.checkpoint import load_model
    from mvae.inference import Pipeline

    model, meta = load_model(path)
    pipe = Pipeline(TorchRuntime(model), meta, folder=Path(path))
    pipe.front_end = TorchFrontEnd(model.cfg.audio)
    return pipe


def everything(pipe, inputs):
    """What a page shows: the label, every decoded image and the speech as a playable WAV."""
    pred = pipe.predict(inputs)
    return pred.label, dict(pred.images), pred.speech.wav_bytes


def input_modalities(modalities) -> tuple[str, str]:
    """The model's modalities that a visitor's drawing and recording are given to: its last image modality
    (Kannada in the shipped model) and its first speech one."""
    drawn = [n for n in registry.names(registry.IMAGE) if n in modalities]
    heard = [n for n in registry.names(registry.SPEECH) if n in modalities]
    if not drawn or not heard:
        raise ValueError(f"the latency benchmark needs a model with an image and a speech modality; this one has "
                         f"{', '.join(modalities)}")
    return drawn[-1], heard[0]


def predict_side_by_side(path, cases: dict, runs: int) -> dict[str, dict[str, list[float]]]:
    """{case: {runtime: [ms per call]}}, the two runtimes interleaved call by call."""
    import mvae

    pipes = {"lean": mvae.load(path), "torch": torch_pipeline(path)}
    times = {case: {name: [] for name in pipes} for case in cases}
    for case, inputs in cases.items():
        for pipe in pipes.values():
            for _ in range(3):
                everything(pipe, inputs)
        for _ in range(runs):
            for name, pipe in pipes.items():
                started = time.perf_counter()
                everything(pipe, inputs)
                times[case][name].append(1000 * (time.perf_counter() - started))
    return times


START = """
    import time
    started = time.perf_counter()
    import numpy as np
    from benchmarks.inputs import canvas_drawing
    {load}
    recording = open({wav!r}, "rb").read()
    first = pipe.predict({{{drawn!r}: canvas_drawing()}}).label
    second = pipe.predict({{{heard!r}: recording}}).label
    elapsed = time.perf_counter() - started
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    import sys
    print(elapsed, peak, "torch" in sys.modules)
"""
LOADS = {"lean": "import mvae\n    pipe = mvae.load({path!r})",
         "torch": "from benchmarks.lean_bench import torch_pipeline\n    pipe = torch_pipeline({path!r})"}


def start(path, wav: bytes, runs: int, drawn: str, heard: str) -> dict[str, list[tuple[float, float, bool]]]:
    """{runtime: [(seconds, peak MB, torch imported)]} of fresh interpreters, alternating the runtimes; each
    gives a canvas to the modality `drawn` and the recording to `heard`."""
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "recording.wav"
        recording.write_bytes(wav)
        out = {name: [] for name in LOADS}
        for _ in range(runs):
            for name, load in LOADS.items():
                code = textwrap.dedent(START.format(load=load.format(path=str(path)), wav=str(recording),
                                                    drawn=drawn, heard=heard))
                done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                      timeout=300, check=True)
                seconds, peak, torch_seen = done.stdout.split()
                out[name].append((float(seconds), float(peak), torch_seen == "True"))
        return out


def venv_size_mb() -> float | None:
    """MB of a fresh venv with requirements.txt installed, or None when pip cannot install it here."""
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r",
                               str(ROOT / "requirements.txt")], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            return None
        has_torch = (venv / "lib").glob("python*/site-packages/torch")
        if any(has_torch):
            raise RuntimeError("requirements.txt installed torch")
        return sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def median(values) -> float:
    return statistics.median(values)


def rows(settings, checkpoint, recording, drawing, row) -> list:
    import mvae

    wav, source = recording
    drawn, heard = input_modalities(mvae.load(checkpoint).modalities)
    cases = {"drawing": {drawn: drawing}, "recording": {heard: wav}}
    times = predict_side_by_side(checkpoint, cases, settings.latency_runs)
    out = []
    for case, by_runtime in times.items():
        lean, old = (float(np.percentile(by_runtime[n], 50)) for n in ("lean", "torch"))
        out.append(row(f"2{'ab'[len(out)]}. predict p50, {case} → everything: lean / torch runtime",
                       f"{lean:.1f} ms / {old:.1f} ms ({old / lean:.2f}× the speed)", "lean no slower",
                       lean <= old,
                       f"label, both images and a playable speech WAV; {settings.latency_runs} calls each, "
                       f"interleaved; p95 {np.percentile(by_runtime['lean'], 95):.1f} / "
                       f"{np.percentile(by_runtime['torch'], 95):.1f} ms; "
                       + ("a 280×280 RGBA canvas" if case == "drawing" else f"2 s 44.1 kHz stereo WAV of {source}")))
    starts = start(checkpoint, wav, settings.app_starts + 2, drawn, heard)
    lean_s, lean_mb = median(s for s, _, _ in starts["lean"]), median(m for _, m, _ in starts["lean"])
    old_s, old_mb = median(s for s, _, _ in starts["torch"]), median(m for _, m, _ in starts["torch"])
    imported = any(t for _, _, t in starts["lean"])
    out.append(row("5a. start: import, load, a canvas and a recording (lean)", f"{lean_s:.2f} s, {lean_mb:.0f} MB peak",
                   f"≤ {TARGET_START_S:g} s, ≤ {TARGET_START_RSS_MB:g} MB",
                   lean_s <= TARGET_START_S and lean_mb <= TARGET_START_RSS_MB and not imported,
                   f"median of {len(starts['lean'])} fresh interpreters; "
                   f"torch imported: {'yes' if imported else 'no'}"))
    out.append(row("5b. the same with the torch runtime (before)", f"{old_s:.2f} s, {old_mb:.0f} MB peak", "—", None,
                   f"median of {len(starts['torch'])}, alternating with 5a"))
    return out


def venv_row(row):
    if shutil.which("pip") is None and not (Path(sys.executable).parent / "pip").exists():
        return [row("6. fresh venv from requirements.txt", "not measured", f"≤ {TARGET_VENV_MB:g} MB", None, "no pip")]
    size = venv_size_mb()
    if size is None:
        return [row("6. fresh venv from requirements.txt", "not measured", f"≤ {TARGET_VENV_MB:g} MB", None,
                    "pip could not reach the package index")]
    return [row("6. fresh venv from requirements.txt", f"{size:.0f} MB", f"≤ {TARGET_VENV_MB:g} MB, no torch",
                size <= TARGET_VENV_MB, "python -m venv, then pip install -r requirements.txt; torch absent")]
