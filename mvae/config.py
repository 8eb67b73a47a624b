"""Configuration dataclasses: every number the model, the audio front end and training use."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

IMAGE_MODALITIES = ("farsi", "kannada")
INPUT_MODALITIES = ("farsi", "kannada", "speech")
LABEL = "label"
N_CLASSES = 10
IMAGE_SIZE = 28
IMAGE_FIT = 20  # MNIST convention: the long side of the ink is fitted to 20 px inside 28x28


@dataclass
class AudioConfig:
    sample_rate: int = 8000
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 64
    n_frames: int = 64
    f_min: float = 20.0
    f_max: float = 4000.0
    log_floor: float = 1e-5
    # Voice activity: frames quieter than the loudest frame by more than trim_top_db are silence.
    trim_top_db: float = 35.0
    trim_frame: int = 256
    trim_floor_margin_db: float = 6.0  # voice must stand this far above the quietest tenth of the frames
    trim_min_range_db: float = 10.0
    silence_peak: float = 1e-3  # a recording whose peak never exceeds this is treated as silent
    min_voiced_s: float = 0.05
    min_input_s: float = 0.05
    max_input_s: float = 60.0
    max_input_rate: int = 384_000
    target_peak: float = 0.9
    griffin_lim_iters: int = 32
    # Training augmentation, scaled by TrainConfig.aug_strength.
    aug_speed: float = 0.12  # relative speed change, uniform in [-aug_speed, +aug_speed]
    aug_pitch_semitones: float = 2.0
    aug_snr_db: tuple[float, float] = (12.0, 40.0)
    aug_gain_db: float = 10.0
    aug_shift_frames: int = 8

    @property
    def num_samples(self) -> int:
        return (self.n_frames - 1) * self.hop_length


@dataclass
class ModelConfig:
    # "mlp" (the seed's fully connected nets), "conv" (conv encoders, transposed-conv decoders) or
    # "conv-mlp" (conv encoders, fully connected decoders: the decoders run on all 8 subsets, so they
    # dominate the cost on a CPU)
    architecture: str = "mlp"
    latent_dim: int = 64  # the shared latent, fused by the product of experts
    # A private style latent per input modality (as in DMVAE and MMVAE+): the shared latent holds what the
    # modalities have in common (which digit), each style latent how this one looks or sounds. A missing
    # modality's style is drawn from its prior, so cross-modal samples vary instead of averaging.
    # 0 gives the plain PoE-MVAE of Wu & Goodman.
    style_dim: int = 0
    # Scale of the prior a missing modality's style is drawn from during training (MMVAE+'s auxiliary
    # prior): wider than N(0, I), so the decoder learns to take the digit from the shared latent.
    cross_style_scale: float = 1.0
    hidden: int = 512
    conv_channels: int = 32
    # 3x3 convs after each stride-2 conv of the digit encoders; the 64x64 log-mel would make them costly.
    image_conv_extra: int = 0
    image_conv_batchnorm: bool = False  # batch norm after every conv of the digit encoders
    n_classes: int = N_CLASSES
    modalities: tuple[str, ...] = INPUT_MODALITIES
    # Every reconstruction term is rescaled to the size of one 28x28 image so that the 4096-bin
    # log-mel does not drown the images; these weights act on top of that balance.
    reference_dim: int = IMAGE_SIZE * IMAGE_SIZE
    recon_weights: dict[str, float] = field(
        default_factory=lambda: {"farsi": 1.0, "kannada": 1.0, "speech": 1.0}
    )
    label_weight: float = 50.0  # the MVAE paper's lambda for its 1-token modality
    speech_likelihood: str = "laplace"  # or "gaussian"
    speech_scale: float = 1.0  # scale of the log-mel likelihood, in units of the per-bin std
    audio: AudioConfig = field(default_factory=AudioConfig)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": decays to lr * lr_floor by the last step
    lr_floor: float = 0.05
    weight_decay: float = 0.0
    beta: float = 1.0
    beta_warmup_epochs: float = 2.0
    pairs_per_epoch: int = 60_000
    seed: int = 0
    speech_aug_copies: int = 4
    aug_strength: float = 1.0
    image_aug: float = 1.0  # strength of random shift / scale / stroke-width changes for drawings
    eval_pairs: int = 0  # 0: every test pair
    eval_batch_size: int = 512
    grad_clip: float = 5.0
    num_threads: int = 0  # 0: torch's default


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls, data: dict):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "audio":
            value = _build(AudioConfig, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**kwargs)


def model_config_from_dict(data: dict) -> ModelConfig:
    return _build(ModelConfig, data)


def train_config_from_dict(data: dict) -> TrainConfig:
    return _build(TrainConfig, data)
