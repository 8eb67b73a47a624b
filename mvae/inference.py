"""The public facade: `mvae.load()` and `Pipeline.predict / generate / traverse / interpolate`.

Everything the app and the command lines show comes through here, so raw user input (canvas pixels,
PNG bytes, WAV bytes) is turned into model inputs by the same code that prepared the training data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from . import api_checks
from .config import LABEL
from .errors import CheckpointError, InputError
from .folders import CHECKPOINTS, SWEEP_FROM_CHECKPOINT
from .kinds import kind
from .latent import LatentMap, dimension_effects
from .runtime import LeanMVAE
from .signals.audio import AudioFrontEnd, PreparedSpeech, wav_bytes
from .store import EVAL_JSON, EVAL_MD, model_path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / CHECKPOINTS / "default"


@dataclass
class SpeechOutput:
    waveform: np.ndarray  # float32 at sample_rate, peak-normalised
    sample_rate: int
    mel: np.ndarray  # (n_mels, n_frames) log-mel the waveform was made from

    @property
    def wav_bytes(self) -> bytes:
        return wav_bytes(self.waveform, self.sample_rate)


@dataclass
class Decoded:
    """Every modality decoded from a batch of latents."""

    latents: np.ndarray  # (N, D)
    images: dict[str, np.ndarray]  # each image modality -> (N, 28, 28) float32 in [0, 1]
    probs: np.ndarray  # (N, 10)
    log_mels: dict[str, np.ndarray]  # each audio modality -> (N, n_mels, n_frames), raw log-mel
    front_end: AudioFrontEnd = field(repr=False)
    # Griffin-Lim's voices of each audio modality, made when first asked for: a page asks on every rerun.
    voiced: dict[str, list[SpeechOutput]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(-1)

    @property
    def mels(self) -> np.ndarray:
        """The first audio modality's log-mels (none, shaped (0, n_mels, n_frames), in a model without one)."""
        cfg = self.front_end.cfg
        return next(iter(self.log_mels.values()), np.zeros((0, cfg.n_mels, cfg.n_frames), np.float32))

    @property
    def speech(self) -> list[SpeechOutput]:
        """The first audio modality's voices (none in a model without one)."""
        first = next(iter(self.log_mels), None)
        return self.voices(first) if first is not None else []

    def voices(self, name: str) -> list[SpeechOutput]:
        """The voices of the audio modality `name`; Griffin-Lim runs only when they are first asked for."""
        if name not in self.log_mels:
            raise InputError(f"No voices of {api_checks.shown(name)}; the audio modalities decoded are "
                             f"{', '.join(self.log_mels) or 'none'}.")
        if name not in self.voiced:
            self.voiced[name] = self._voiced(self.log_mels[name])
        return self.voiced[name]

    def _voiced(self, mels: np.ndarray) -> list[SpeechOutput]:
        if len(mels) == 0:
            return []
        waves = self.front_end.waveform_from_log_mel(mels)
        rate = self.front_end.cfg.sample_rate
        return [SpeechOutput(w, rate, m) for w, m in zip(waves, mels)]


@dataclass
class Prediction:
    label: int
    probs: np.ndarray  # (10,) sums to 1
    images: dict[str, np.ndarray]  # both scripts, (28, 28) float32 in [0, 1]
    latent_mean: np.ndarray  # (F,) the full latent decoded: fused shared mean, then each modality's style
    latent_logvar: np.ndarray  # (F,) a missing modality's style has the prior's, 0
    experts: dict[str, tuple[np.ndarray, np.ndarray]]  # each given modality's own shared expert (mean, logvar)
    inputs: dict[str, np.ndarray]  # what the model saw: 28x28 digits, the speech log-mel
    decoded: Decoded = field(repr=False)
    prepared_speech: PreparedSpeech | None = None

    @property
    def speech(self) -> SpeechOutput:
        """The spoken digit; Griffin-Lim runs on first access only."""
        return self.decoded.speech[0]


class Pipeline:
    """The model as the app uses it, run by the lean runtime (numpy). A torch MVAE may be given instead of
    a LeanMVAE (in training, tests or evaluation, where torch is installed): it is converted on the spot;
    anything else is used as it is, so it must have a LeanMVAE's interface."""

    def __init__(self, model: LeanMVAE, metadata: dict | None = None, folder=None, source=None):
        self.folder = Path(folder) if folder is not None else None  # where the evaluator's files live
        self.source = Path(source) if source is not None else None  # the model file, named when it misbehaves
        if hasattr(model, "state_dict"):
            # Only a caller that holds a torch model gets here, so only it pays for importing torch.
            from .model.export import lean_twin

            model = lean_twin(model.eval())
        self.model = model
        self.metadata = metadata or {}
        self.front_end = AudioFrontEnd(self.model.cfg.audio)

    @property
    def config(self):
        return self.model.cfg

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.input_names

    @property
    def latent_dim(self) -> int:
        """Length of a full latent: the shared part, then each modality's style."""
        return self.model.full_latent_dim

    @property
    def style_modalities(self) -> tuple[str, ...]:
        """The modalities with a private style latent (none for a plain PoE-MVAE)."""
        return self.model.style_names

    @property
    def latent_layout(self) -> dict[str, slice]:
        """Which slice of a full latent is "shared" and which is each modality's style."""
        return self.model.latent_layout()

    @cached_property
    def latent_map(self) -> LatentMap | None:
        """The evaluator's 2-D map of test-set latents, when the checkpoint folder has one."""
        return LatentMap.load(self.folder) if self.folder else None

    def _read(self, relative: str | Path) -> str | None:
        path = self.folder / relative if self.folder else None
        return path.read_text() if path and path.is_file() else None

    def report(self, name: str = EVAL_JSON) -> dict | None:
        """A JSON file the evaluator wrote beside the checkpoint, if present."""
        text = self._read(name)
        return json.loads(text) if text is not None else None

    def report_table(self) -> str | None:
        """The evaluator's Markdown table, if present."""
        return self._read(EVAL_MD)

    def sweep_results(self) -> dict | None:
        """The hyperparameter study's summary, kept beside the checkpoint folders (`mvae.folders`)."""
        text = self._read(SWEEP_FROM_CHECKPOINT)
        return json.loads(text) if text is not None else None

    # -- inputs ---------------------------------------------------------------------------------
    def prepare(self, inputs: dict) -> tuple[dict[str, np.ndarray], PreparedSpeech | None]:
        """User inputs -> a batch of one in the model's input space. None values count as absent."""
        inputs = api_checks.inputs(inputs)
        given = {k: v for k, v in inputs.items() if v is not None}
        if not given:
            raise InputError(f"Give at least one input: draw a digit or record one ({', '.join(self.modalities)}).")
        unknown = sorted(set(given) - set(self.model.names))
        if unknown:
            raise InputError(f"Unknown input {api_checks.shown(unknown[0])}; give any of {', '.join(self.modalities)} "
                             f"(or {LABEL}).")
        batch, prepared_speech = {}, None
        for name in self.model.names:
            if name in given:
                item, prepared = kind(name).prepare(given[name], self.front_end, self.config.n_classes)
                batch[name] = item[None]
                prepared_speech = prepared or prepared_speech
        return batch, prepared_speech

    # -- the model's own numbers -------------------------------------------------------------------
    def _model_fault(self, where: str) -> CheckpointError:
        """The user's numbers were finite and the model's are not: the fault is the model file's (float16
        weights that overflowed when it was written, say), and the message must not send the user hunting."""
        named = f"The model file {self.source}" if self.source else "The model"
        return CheckpointError(f"{named} produced NaN or infinite values in its {where} from finite inputs: its "
                               "weights are damaged or overflow. Download the checkpoint again or retrain it.")

    def _checked(self, where: str, *arrays: np.ndarray) -> None:
        if not all(np.isfinite(a).all() for a in arrays):
            raise self._model_fault(where)

    def _outputs(self, z: np.ndarray, names=None) -> dict[str, np.ndarray]:
        """The decoders on latents already checked, MAX_SAMPLES rows at a time: the model files are bounded
        for batches of that size, so no network is ever given more."""
        parts = []
        with np.errstate(all="ignore"):  # overflow is found below, with a message, rather than warned about
            for start in range(0, len(z), api_checks.MAX_SAMPLES):
                parts.append(self.model.outputs(z[start:start + api_checks.MAX_SAMPLES], names))
        out = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        self._checked("decoded outputs", *out.values())
        return out

    # -- outputs --------------------------------------------------------------------------------
    def decode(self, latents) -> Decoded:
        return self._decode(api_checks.latents(latents, self.latent_dim))

    def _decode(self, z: np.ndarray) -> Decoded:
        """Decodes latents the facade made itself (from checked arguments), so that a fault in them is the
        model's, not the caller's."""
        z = np.asarray(z, dtype=np.float32).reshape(-1, self.latent_dim)
        self._checked("latents", z)
        groups: dict[str, dict[str, np.ndarray]] = {"images": {}, "mels": {}, "probs": {}}
        for name, value in self._outputs(z).items():
            groups[kind(name).group][name] = value
        return Decoded(z, groups["images"], groups["probs"][LABEL], groups["mels"], self.front_end)

    def predict(self, inputs: dict) -> Prediction:
        batch, prepared_speech = self.prepare(inputs)
        if not all(np.isfinite(v).all() for v in batch.values()):  # prepared inputs are finite by construction
            raise InputError("The input gave NaN or infinite values once prepared; give finite numbers.")
        with np.errstate(all="ignore"):  # overflow is found below, with a message, rather than warned about
            encoded = self.model.encode(batch)
            mean, joint_logvar = self.model.full_posterior(encoded)
        self._checked("latent posterior", encoded.mu, encoded.logvar, mean, joint_logvar,
                      *(a for pair in encoded.styles.values() for a in pair))
        decoded = self._decode(mean)
        return Prediction(
            label=int(decoded.labels[0]),
            probs=decoded.probs[0].astype(np.float64) / decoded.probs[0].sum(),
            images={n: v[0] for n, v in decoded.images.items()},
            decoded=decoded,
            latent_mean=mean[0],
            latent_logvar=joint_logvar[0],
            experts={n: (encoded.mu[i, 0], encoded.logvar[i, 0]) for i, n in enumerate(encoded.names)},
            inputs={n: batch[n][0] for n in batch if n in self.model.input_names},
            prepared_speech=prepared_speech,
        )

    def label_posterior(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """The full latent's posterior given a digit alone: its shared posterior, and every style's prior."""
        label = api_checks.label(label, self.model.cfg.n_classes)
        batch, _ = self.prepare({LABEL: label})
        with np.errstate(all="ignore"):
            mu, logvar = self.model.full_posterior(batch)
        self._checked("latent posterior", mu, logvar)
        return mu[0], logvar[0]

    def generate(self, label: int, n: int = 1, temperature: float = 1.0, seed: int | None = None) -> Decoded:
        """n samples of every modality for one digit, from the label's posterior widened by `temperature`."""
        label, n, temperature, seed = api_checks.generate(label, n, temperature, seed, self.model.cfg.n_classes)
        mean, logvar = self.label_posterior(label)
        noise = np.random.default_rng(seed).standard_normal((int(n), self.latent_dim)).astype(np.float32)
        with np.errstate(all="ignore"):  # a huge log-variance is the model's fault, found by _decode
            return self._decode(mean + temperature * np.exp(0.5 * logvar) * noise)

    def traverse(self, latent, dims, values) -> Decoded:
        """Decodes `latent` with each dim in `dims` set to each of `values`: N = len(dims) * len(values), dim-major."""
        latent, dims, values = api_checks.traverse(latent, dims, values, self.latent_dim)
        grid = np.repeat(latent[None], len(dims) * len(values), axis=0)
        for i, d in enumerate(dims):
            grid[i * len(values):(i + 1) * len(values), d] = values
        return self._decode(grid)

    def restyle(self, latent, keep=(), n: int = 6, seed: int | None = None) -> Decoded:
        """n decodings of `latent` that keep its shared part (the digit) and the styles of the modalities in
        `keep`, with every other modality's style drawn afresh from its prior."""
        latent = api_checks.latent(latent, self.latent_dim)
        n = api_checks.whole_number(n, "The number of styles", 1, api_checks.MAX_SAMPLES)
        keep = api_checks.kept(keep, self.modalities)
        grid = np.repeat(latent[None], n, axis=0)
        rng = np.random.default_rng(api_checks.seed(seed))
        for name, part in self.latent_layout.items():
            if name != "shared" and name not in keep:
                grid[:, part] = rng.standard_normal((n, part.stop - part.start))
        return self._decode(grid)

    def dimension_effects(self, latent, target: str) -> np.ndarray:
        """For each latent dimension, how much moving it from -2 to +2 changes `target` (per pixel for a digit)."""
        if not isinstance(target, str) or target not in self.model.names:
            raise InputError(f"Unknown modality {api_checks.shown(target)}; give any of {', '.join(self.modalities)}.")
        with np.errstate(all="ignore"):  # overflow is found below, with a message, rather than warned about
            effects = dimension_effects(self.model, api_checks.latent(latent, self.latent_dim)[None], target,
                                        batch=api_checks.MAX_SAMPLES)
        self._checked("decoded outputs", effects)
        return effects

    def interpolate(self, start, end, steps: int = 8) -> Decoded:
        start, end, steps = api_checks.interpolate(start, end, steps, self.latent_dim)
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        return self._decode((1 - t) * np.asarray(start, np.float32) + t * np.asarray(end, np.float32))


def load(path: str | os.PathLike | None = None) -> Pipeline:
    """The shipped default checkpoint, or the checkpoint folder / model.safetensors file at `path`, run by
    the lean runtime."""
    path = path or os.environ.get("MVAE_CHECKPOINT") or DEFAULT_CHECKPOINT
    model, meta = LeanMVAE.load(path)
    return Pipeline(model, meta, folder=model_path(path).parent, source=model_path(path))
